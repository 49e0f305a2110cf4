//! The etcd model's leases (grant, revoke, keepalive, expiry in history time) and compaction
//! (compact, ranges at past revisions). Times in ns; S is one second.

mod common;

use common::*;
use detcd_checks::history::{Bytes, KeyValue, Operation, Outcome, PutRequest, RangeRequest, Request, Response};
use detcd_checks::ModelKind;

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
