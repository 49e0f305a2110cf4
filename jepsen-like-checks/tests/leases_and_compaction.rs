//! The etcd model's leases (grant, revoke, keepalive, expiry in history time) and compaction
//! (compact, ranges at past revisions). Times in ns; S is one second.

mod common;

use common::*;
use detcd_checks::history::{Bytes, KeyValue, Operation, Outcome, PutRequest, RangeRequest, Request, Response};
use detcd_checks::linearizability::{CheckOptions, Verdict};
use detcd_checks::models::{ClockJump, LeaseClockSlack};
use detcd_checks::{check_history, ModelKind};

const S: u64 = 1_000_000_000;
const ETCD: ModelKind = ModelKind::Etcd;

fn ok(client: u64, call_ns: u64, return_ns: u64, op: Request, output: Response) -> Operation {
    Operation { client, call_ns, return_ns, op, outcome: Outcome::Ok, output: Some(output), error: None }
}

fn grant(call_ns: u64, id: i64, ttl_s: i64, revision: i64) -> Operation {
    ok(
        9,
        call_ns,
        call_ns + 10,
        Request::LeaseGrant { ttl_s, id },
        Response::LeaseGrant { header_revision: revision, id, ttl_s },
    )
}

fn revoke(call_ns: u64, id: i64, revision: i64) -> Operation {
    ok(9, call_ns, call_ns + 10, Request::LeaseRevoke { id }, Response::LeaseRevoke { header_revision: revision })
}

fn keepalive(call_ns: u64, id: i64, ttl_s: i64) -> Operation {
    // The header is whatever the leader had applied: not checked, so any value does.
    ok(9, call_ns, call_ns + 10, Request::LeaseKeepalive { id }, Response::LeaseKeepalive { header_revision: 1, ttl_s })
}

fn leased_put(call_ns: u64, key: &str, value: &str, lease: i64, revision: i64) -> Operation {
    let op = Request::Put(PutRequest { key: key.into(), value: value.into(), lease, prev_kv: false });
    ok(1, call_ns, call_ns + 10, op, Response::Put { header_revision: revision, prev_kv: None })
}

fn leased_kv(key: &str, value: &str, revision: i64, lease: i64) -> KeyValue {
    KeyValue { lease, ..kv(key, value, revision, revision, 1) }
}

fn get_at(call_ns: u64, key: &str, at: i64, header: i64, found: Option<KeyValue>) -> Operation {
    let op = Request::Range(RangeRequest { key: key.into(), range_end: Bytes::default(), revision: at });
    ok(2, call_ns, call_ns + 10, op, Response::Range { header_revision: header, kvs: found.into_iter().collect() })
}

fn compact(call_ns: u64, revision: i64, header: i64) -> Operation {
    ok(
        3,
        call_ns,
        call_ns + 10,
        Request::Compact { revision, physical: false },
        Response::Compact { header_revision: header },
    )
}

#[test]
fn revoke_deletes_the_leased_keys_at_one_new_revision() {
    let h = vec![
        grant(0, 7, 10, 1),
        leased_put(100, "a", "1", 7, 2),
        leased_put(200, "b", "1", 7, 3),
        get(2, 300, 310, "a", 3, Some(leased_kv("a", "1", 2, 7))),
        revoke(400, 7, 4),
        get(2, 500, 510, "a", 4, None),
        get(2, 600, 610, "b", 4, None),
    ];
    assert_linearizable(&h, ETCD);
    // A key that survives the revoke of its lease.
    let mut bad = h.clone();
    bad[5] = get(2, 500, 510, "a", 4, Some(leased_kv("a", "1", 2, 7)));
    assert_violation(&bad, ETCD);
    // A revoke of a lease without keys makes no revision.
    assert_linearizable(&[grant(0, 7, 10, 1), revoke(100, 7, 1)], ETCD);
}

#[test]
fn a_put_with_a_lease_never_granted_cannot_succeed() {
    assert_violation(&[leased_put(0, "a", "1", 9, 2)], ETCD);
    // After its revoke neither.
    assert_violation(&[grant(0, 9, 10, 1), revoke(100, 9, 1), leased_put(200, "a", "1", 9, 2)], ETCD);
}

#[test]
fn a_lease_expires_only_after_its_ttl() {
    // Granted at 0 with 1 s; the key is gone at revision 3 (the expiry's) by 5 s: fine.
    let expired = vec![grant(0, 7, 1, 1), leased_put(100, "a", "1", 7, 2), get(2, 5 * S, 5 * S + 10, "a", 3, None)];
    assert_linearizable(&expired, ETCD);
    // Gone at half a second: too early.
    let early = vec![grant(0, 7, 1, 1), leased_put(100, "a", "1", 7, 2), get(2, S / 2, S / 2 + 10, "a", 3, None)];
    assert_violation(&early, ETCD);
    // Still there long after its TTL: the expiry may not have happened yet.
    let late = vec![
        grant(0, 7, 1, 1),
        leased_put(100, "a", "1", 7, 2),
        get(2, 50 * S, 50 * S + 10, "a", 2, Some(leased_kv("a", "1", 2, 7))),
    ];
    assert_linearizable(&late, ETCD);
}

#[test]
fn a_keepalive_pushes_the_expiry_back() {
    let base = vec![grant(0, 7, 1, 1), leased_put(100, "a", "1", 7, 2), keepalive(S * 8 / 10, 7, 1)];
    // Renewed at 0.8 s at the earliest: gone at 1.5 s is too early, at 2 s fine.
    let mut early = base.clone();
    early.push(get(2, S * 15 / 10, S * 15 / 10 + 10, "a", 3, None));
    assert_violation(&early, ETCD);
    let mut fine = base.clone();
    fine.push(get(2, 2 * S, 2 * S + 10, "a", 3, None));
    assert_linearizable(&fine, ETCD);
    // A keepalive that does not find a live lease (TTL 0) before its TTL ran out.
    let lost = vec![grant(0, 7, 10, 1), keepalive(S, 7, 0)];
    assert_violation(&lost, ETCD);
    // ... but after it: the lease expired.
    assert_linearizable(&[grant(0, 7, 1, 1), keepalive(3 * S, 7, 0)], ETCD);
    // ... or after a revoke.
    assert_linearizable(&[grant(0, 7, 10, 1), revoke(100, 7, 1), keepalive(S, 7, 0)], ETCD);
}

#[test]
fn a_lease_id_granted_twice_is_a_violation() {
    assert_violation(&[grant(0, 7, 10, 1), grant(100, 7, 10, 1)], ETCD);
}

#[test]
fn reads_at_a_past_revision_see_that_revision() {
    let h = vec![
        put(1, 0, 10, "a", "1", 2),
        put(1, 20, 30, "a", "2", 3),
        get_at(40, "a", 2, 3, Some(kv("a", "1", 2, 2, 1))),
        get_at(60, "a", 1, 3, None),
        get_at(80, "a", 3, 3, Some(kv("a", "2", 2, 3, 2))),
    ];
    assert_linearizable(&h, ETCD);
    let mut wrong = h.clone();
    wrong[2] = get_at(40, "a", 2, 3, Some(kv("a", "2", 2, 3, 2)));
    assert_violation(&wrong, ETCD);
    // A revision in the future cannot be read.
    assert_violation(&[put(1, 0, 10, "a", "1", 2), get_at(40, "a", 5, 2, None)], ETCD);
}

#[test]
fn a_read_below_the_compacted_revision_must_fail() {
    let base = vec![put(1, 0, 10, "a", "1", 2), put(1, 20, 30, "a", "2", 3), compact(40, 3, 3)];
    // At the compacted revision itself: fine.
    let mut at = base.clone();
    at.push(get_at(60, "a", 3, 3, Some(kv("a", "2", 2, 3, 2))));
    assert_linearizable(&at, ETCD);
    // Below it, answered ok: a violation.
    let mut below = base.clone();
    below.push(get_at(60, "a", 2, 3, Some(kv("a", "1", 2, 2, 1))));
    assert_violation(&below, ETCD);
    // Below it, failed (ErrCompacted): fine.
    let mut refused = base.clone();
    refused.push(failed(get_at(60, "a", 2, 3, None)));
    assert_linearizable(&refused, ETCD);
    // A compaction of a future revision, or twice the same, cannot succeed.
    assert_violation(&[put(1, 0, 10, "a", "1", 2), compact(40, 5, 2)], ETCD);
    assert_violation(&[put(1, 0, 10, "a", "1", 2), compact(40, 2, 2), compact(60, 2, 2)], ETCD);
}

// ---- Removing a lease without keys happens where a keepalive observes it ---------------------

fn unleased_put(call_ns: u64, key: &str, value: &str, revision: i64) -> Operation {
    leased_put(call_ns, key, value, 0, revision)
}

#[test]
fn a_lease_whose_keys_moved_away_expires_only_after_its_ttl() {
    // Key "a" was attached to lease 7, then overwritten without a lease: 7 holds no keys.
    let base = vec![grant(0, 7, 1, 1), leased_put(100, "a", "1", 7, 2), unleased_put(200, "a", "2", 3)];
    let mut after_ttl = base.clone();
    after_ttl.push(keepalive(3 * S, 7, 0));
    assert_linearizable(&after_ttl, ETCD);
    let mut before_ttl = base.clone();
    before_ttl.push(keepalive(S / 2, 7, 0));
    assert_violation(&before_ttl, ETCD);
    // The key it no longer carries survives the expiry, at its own revision.
    after_ttl.push(get(2, 4 * S, 4 * S + 10, "a", 3, Some(kv("a", "2", 2, 3, 2))));
    assert_linearizable(&after_ttl, ETCD);
}

#[test]
fn a_lease_seen_gone_while_it_held_keys_took_them_along() {
    let base = vec![grant(0, 7, 1, 1), leased_put(100, "a", "1", 7, 2), keepalive(3 * S, 7, 0)];
    let mut gone = base.clone();
    gone.push(get(2, 4 * S, 4 * S + 10, "a", 3, None));
    assert_linearizable(&gone, ETCD);
    // The lease is gone but its key is still there, at the old revision: impossible.
    let mut kept = base.clone();
    kept.push(get(2, 4 * S, 4 * S + 10, "a", 2, Some(leased_kv("a", "1", 2, 7))));
    assert_violation(&kept, ETCD);
}

#[test]
fn a_timed_out_revoke_may_explain_a_lease_found_gone_but_only_after_it_was_sent() {
    let revoke_timed_out = indeterminate(revoke(S, 7, 1));
    let fine = vec![grant(0, 7, 60, 1), revoke_timed_out.clone(), keepalive(2 * S, 7, 0)];
    assert_linearizable(&fine, ETCD);
    let before = vec![grant(0, 7, 60, 1), keepalive(S / 2, 7, 0), revoke_timed_out.clone()];
    assert_violation(&before, ETCD);
    // A lease used after the timed-out revoke was still alive then: the revoke, if it happened,
    // came later, and a later keepalive may find the lease gone.
    let used = vec![
        grant(0, 7, 60, 1),
        revoke_timed_out,
        leased_put(2 * S, "a", "1", 7, 2),
        keepalive(3 * S, 7, 0),
        get(2, 4 * S, 4 * S + 10, "a", 3, None),
    ];
    assert_linearizable(&used, ETCD);
}

#[test]
fn a_timed_out_keepalive_need_not_have_renewed_the_lease() {
    let renewed_maybe = indeterminate(keepalive(S * 8 / 10, 7, 1));
    // Had it renewed the lease at 0.8 s, a TTL 0 at 1.5 s would be early; it may not have.
    assert_linearizable(&[grant(0, 7, 1, 1), renewed_maybe.clone(), keepalive(S * 15 / 10, 7, 0)], ETCD);
    // An answered one did renew it.
    assert_violation(&[grant(0, 7, 1, 1), keepalive(S * 8 / 10, 7, 1), keepalive(S * 15 / 10, 7, 0)], ETCD);
}

#[test]
fn clock_slack_lets_a_lease_that_was_never_renewed_expire_early_by_that_much() {
    let h =
        vec![grant(0, 7, 2, 1), leased_put(100, "a", "1", 7, 2), get(2, S * 15 / 10, S * 15 / 10 + 10, "a", 3, None)];
    assert_violation(&h, ETCD);
    let slack = CheckOptions { budget_ms: 30_000, lease_clock_slack_ms: 1_000, ..CheckOptions::default() };
    let checked = check_history(&h, ETCD, &slack).expect("checkable");
    assert_eq!(checked.result.verdict, Verdict::Linearizable);
}

#[test]
fn only_a_clock_jump_after_the_last_renewal_lets_a_lease_expire_early() {
    // Granted with 2 s at 1 s, the key gone at 2.5 s: early by half a second.
    let h = vec![
        grant(S, 7, 2, 1),
        leased_put(S + 100, "a", "1", 7, 2),
        get(2, S * 25 / 10, S * 25 / 10 + 10, "a", 3, None),
    ];
    let with_jumps = |jumps: Vec<ClockJump>| {
        let options = CheckOptions { budget_ms: 30_000, lease_clock_jumps: jumps, ..CheckOptions::default() };
        check_history(&h, ETCD, &options).expect("checkable").result.verdict
    };
    let jump = |at_ns: u64, server: u64, by_ns: u64| ClockJump { at_ns, server, by_ns };
    let violation = |v: Verdict| matches!(v, Verdict::NotLinearizable { .. });
    assert!(violation(with_jumps(vec![])));
    // A leader's clock that jumped a second after the grant expired it a second early.
    assert_eq!(with_jumps(vec![jump(S * 3 / 2, 1, S)]), Verdict::Linearizable);
    // A jump before the grant changes nothing: the leader set the expiry from the jumped clock.
    assert!(violation(with_jumps(vec![jump(S / 2, 1, S), jump(S * 3 / 2, 2, S / 4)])));
    // Two servers' jumps do not add up: each leader restarts the lease from its own clock.
    assert!(violation(with_jumps(vec![jump(S * 5 / 4, 1, S / 4), jump(S * 3 / 2, 2, S / 4)])));
    // One server's do.
    assert_eq!(with_jumps(vec![jump(S * 5 / 4, 1, S / 4), jump(S * 3 / 2, 1, S / 4)]), Verdict::Linearizable);
}

#[test]
fn the_jump_slack_counts_one_servers_jumps_at_or_after_the_renewal() {
    let jump = |at_ns: u64, server: u64, by_ns: u64| ClockJump { at_ns, server, by_ns };
    let slack = LeaseClockSlack::new(5, &[jump(10, 1, 100), jump(20, 2, 150), jump(30, 1, 40), jump(30, 3, 1)]);
    assert_eq!(slack.after_ns(0), 5 + 150);
    assert_eq!(slack.after_ns(10), 5 + 150);
    assert_eq!(slack.after_ns(11), 5 + 150);
    assert_eq!(slack.after_ns(21), 5 + 40);
    assert_eq!(slack.after_ns(30), 5 + 40);
    assert_eq!(slack.after_ns(31), 5);
    assert_eq!(LeaseClockSlack::default().after_ns(0), 0);
}

/// Three clients granting leases and keeping them alive, a third of the grants and half of the
/// keepalives timed out, leases expiring all along, one client writing: the shape of a faulty
/// run's history that used to exhaust the search (each timed-out grant or keepalive and each
/// expiry of a lease without keys was a choice left open to the end of the history, so a
/// violation at the end was searched for in every combination of them). Ends with a keepalive
/// that finds a lease of 60 s gone after a tenth of a second if `early_expiry`.
fn busy_lease_history(rounds: u64, early_expiry: bool) -> Vec<Operation> {
    let mut ops = Vec::new();
    let lease_of = |client: u64, round: u64| ((client as i64 + 1) << 32) | round as i64;
    for round in 0..rounds {
        let at = round * S / 4;
        for client in 0..3u64 {
            let t = at + client * 1_000;
            let mut g = grant(t, lease_of(client, round), 1, 1 + round as i64);
            g.client = client;
            if round % 3 == 1 {
                // Timed out, and never used again: the client does not know it exists.
                ops.push(indeterminate(g));
                continue;
            }
            ops.push(g);
            let mut k = keepalive(t + 100_000, lease_of(client, round), 1);
            k.client = client;
            ops.push(if round % 2 == 0 { indeterminate(k) } else { k });
        }
        let mut p = unleased_put(at + 200_000, &format!("k{round}"), "v", 2 + round as i64);
        p.client = 0;
        ops.push(p);
        if round >= 8 && (round - 8) % 3 != 1 {
            // Two seconds after a lease of 1 s was granted and renewed: it may be gone.
            let mut k = keepalive(at + 300_000, lease_of(2, round - 8), 0);
            k.client = 2;
            ops.push(k);
        }
    }
    let end = rounds * S / 4;
    let last = lease_of(1, rounds);
    let mut g = grant(end, last, 60, 1 + rounds as i64);
    g.client = 1;
    let mut k = keepalive(end + S / 10, last, if early_expiry { 0 } else { 60 });
    k.client = 1;
    ops.extend([g, k]);
    ops
}

#[test]
fn a_busy_lease_history_with_timeouts_checks_quickly_either_way() {
    for early_expiry in [false, true] {
        let h = busy_lease_history(40, early_expiry);
        let checked =
            check_history(&h, ETCD, &CheckOptions { budget_ms: 30_000, ..CheckOptions::default() }).expect("checkable");
        assert_eq!(checked.result.verdict.is_linearizable(), !early_expiry, "{:?}", checked.result.verdict);
        assert!(
            checked.result.stats.steps < 100_000,
            "{} steps: the optional lease steps multiply the search again",
            checked.result.stats.steps
        );
    }
}
