//! Scenarios for the lessor, driven together with a real [`Store`]: keys are attached and
//! detached only through the store's write events, as the node does it.

use bytes::Bytes;
use detcd_proto::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use detcd_proto::mvccpb::KeyValue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::limits;
use crate::mvcc::{LeaseView, Store};
use crate::time::{Duration, Instant};
use crate::Error;

const MIN_TTL_S: i64 = 2;

fn at_s(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

fn at_ms(ms: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(ms)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn keys(names: &[&str]) -> Vec<Bytes> {
    names.iter().map(|n| b(n)).collect()
}

fn put_op(key: &str, lease: i64) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: b(key),
            value: b("v"),
            lease,
            ..Default::default()
        })),
    }
}

fn delete_op(key: &Bytes) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.clone(),
            ..Default::default()
        })),
    }
}

/// A store and a lessor applied together, the way a member applies raft entries.
struct World {
    store: Store,
    lessor: Lessor,
}

impl World {
    fn new() -> World {
        World { store: Store::new(), lessor: Lessor::new(MIN_TTL_S) }
    }

    fn leader(now: Instant) -> World {
        let mut world = World::new();
        world.lessor.promote(now, Duration::ZERO);
        world
    }

    fn put(&mut self, key: &str, lease: i64) -> Result<(), Error> {
        self.put_req(PutRequest { key: b(key), value: b("v"), lease, ..Default::default() })
    }

    fn put_req(&mut self, req: PutRequest) -> Result<(), Error> {
        let applied = self.store.put(&req, &self.lessor)?;
        self.lessor.apply_events(&applied.events);
        self.check();
        Ok(())
    }

    fn delete(&mut self, key: &str, range_end: &str) {
        let req = DeleteRangeRequest { key: b(key), range_end: b(range_end), ..Default::default() };
        let applied = self.store.delete_range(&req).expect("valid delete");
        self.lessor.apply_events(&applied.events);
        self.check();
    }

    fn txn(&mut self, ops: Vec<RequestOp>) -> Result<(), Error> {
        let req = TxnRequest { success: ops, ..Default::default() };
        let applied = self.store.txn(&req, &self.lessor)?;
        self.lessor.apply_events(&applied.events);
        self.check();
        Ok(())
    }

    /// A `LeaseRevoke` as the node applies it: the lease goes, its keys are deleted in one
    /// revision, and the delete events reach the lessor.
    fn revoke(&mut self, id: i64) -> Result<Vec<Bytes>, Error> {
        let doomed = self.lessor.revoke(id)?;
        let revision = self.store.current_revision();
        if !doomed.is_empty() {
            let req = TxnRequest { success: doomed.iter().map(delete_op).collect(), ..Default::default() };
            let applied = self.store.txn(&req, &self.lessor).expect("delete keys");
            assert_eq!(applied.events.len(), doomed.len());
            self.lessor.apply_events(&applied.events);
            assert_eq!(self.store.current_revision(), revision + 1, "one revision");
        }
        self.check();
        Ok(doomed)
    }

    fn live(&self) -> Vec<KeyValue> {
        let all = RangeRequest { key: b("\0"), range_end: b("\0"), ..Default::default() };
        self.store.range(&all).expect("range all").kvs
    }

    fn keys_with_leases(&self) -> Vec<(Bytes, i64)> {
        self.live().into_iter().map(|kv| (kv.key, kv.lease)).collect()
    }

    fn keys_of(&self, id: i64) -> Vec<Bytes> {
        self.lessor.time_to_live(id, Instant::ZERO).expect("lease").keys
    }

    /// The lessor's invariants, and agreement with the store: a live key is attached exactly
    /// to the lease its value carries.
    fn check(&self) {
        self.lessor.invariants();
        let mut leased = 0;
        for kv in self.live() {
            let expected = (kv.lease != 0).then_some(kv.lease);
            assert_eq!(self.lessor.lease_of(&kv.key), expected, "{kv:?}");
            leased += usize::from(kv.lease != 0);
        }
        let attached: usize = self.lessor.leases().iter().map(|&id| self.keys_of(id).len()).sum();
        assert_eq!(attached, leased, "attached keys that are not live");
    }
}

fn remaining_s(lessor: &Lessor, id: i64, now: Instant) -> i64 {
    lessor.time_to_live(id, now).expect("lease").remaining_ttl_s
}

// ---- grant ------------------------------------------------------------------------------------

#[test]
fn min_ttl_follows_etcds_rule() {
    // (election ticks, heartbeat ms, min TTL s): (3 * ticks / 2) rounded down, times the
    // heartbeat, rounded up to seconds.
    let table = [
        (10, 100, 2), // etcd's defaults: 1.5 s
        (5, 100, 1),  // 7 ticks: 0.7 s
        (3, 500, 2),  // 4 ticks: 2.0 s exactly
        (20, 100, 3),
        (50, 100, 8), // 75 ticks: 7.5 s
        (10, 1000, 15),
        (1, 1, 1), // 1 ms rounds up to a second
        (0, 100, 1),
    ];
    for (ticks, heartbeat_ms, expected) in table {
        assert_eq!(min_ttl_s(ticks, heartbeat_ms), expected, "{ticks} x {heartbeat_ms}");
    }
    assert_eq!(min_ttl_s(u64::MAX, u64::MAX), limits::MAX_LEASE_TTL_S);
}

#[test]
fn grant_validates_like_etcd() {
    let mut lessor = Lessor::new(5);
    let now = at_s(1);
    lessor.grant(7, 60, now).unwrap();
    // (id, ttl asked, result)
    let table: [(i64, i64, Result<LeaseGrant, Error>); 8] = [
        (0, 10, Err(Error::LeaseNotFound)),
        (1, limits::MAX_LEASE_TTL_S + 1, Err(Error::LeaseTtlTooLarge)),
        // the TTL is checked before the id, as in etcd
        (7, limits::MAX_LEASE_TTL_S + 1, Err(Error::LeaseTtlTooLarge)),
        (7, 10, Err(Error::LeaseExists)),
        (2, limits::MAX_LEASE_TTL_S, Ok(LeaseGrant { id: 2, ttl_s: limits::MAX_LEASE_TTL_S })),
        (3, 1, Ok(LeaseGrant { id: 3, ttl_s: 5 })),
        (4, -3, Ok(LeaseGrant { id: 4, ttl_s: 5 })),
        (-9, 6, Ok(LeaseGrant { id: -9, ttl_s: 6 })),
    ];
    for (id, ttl_s, expected) in table {
        assert_eq!(lessor.grant(id, ttl_s, now), expected, "grant({id}, {ttl_s})");
        lessor.invariants();
    }
    assert_eq!(lessor.leases(), vec![-9, 2, 3, 4, 7]);
    assert_eq!(lessor.len(), 5);
    assert!(lessor.lease_exists(3) && !lessor.lease_exists(1));
    assert_eq!(remaining_s(&lessor, 3, now), 5, "non-primary: the granted TTL");
}

#[test]
fn follower_lessor_never_expires() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.grant(1, 5, at_s(0)).unwrap();
    assert!(!lessor.is_primary());
    assert_eq!(lessor.next_deadline(), None);
    assert!(lessor.expired(at_s(1_000_000), 10).is_empty());
    assert!(lessor.checkpoints_due(at_s(1_000_000), 10).is_empty());
    assert_eq!(lessor.renew(1, at_s(1)), Err(Error::NotLeader));
    assert_eq!(lessor.renew(99, at_s(1)), Err(Error::NotLeader));
    assert_eq!(remaining_s(&lessor, 1, at_s(1_000_000)), 5);
    lessor.invariants();
}

// ---- keys -------------------------------------------------------------------------------------

#[test]
fn keys_attach_and_detach_through_store_events() {
    let mut w = World::new();
    w.lessor.grant(1, 10, at_s(0)).unwrap();
    w.lessor.grant(2, 10, at_s(0)).unwrap();
    w.put("a", 1).unwrap();
    w.put("b", 1).unwrap();
    w.put("c", 0).unwrap();
    assert_eq!((w.lessor.lease_of(b"a"), w.lessor.lease_of(b"c")), (Some(1), None));
    assert_eq!(w.keys_of(1), keys(&["a", "b"]));

    // a put with another lease moves the key
    w.put("a", 2).unwrap();
    assert_eq!((w.keys_of(1), w.keys_of(2)), (keys(&["b"]), keys(&["a"])));
    // ignore_lease keeps it where it is
    w.put_req(PutRequest { key: b("a"), value: b("new"), ignore_lease: true, ..Default::default() }).unwrap();
    assert_eq!(w.lessor.lease_of(b"a"), Some(2));
    // a put without a lease detaches it; a delete too
    w.put("a", 0).unwrap();
    assert_eq!(w.lessor.lease_of(b"a"), None);
    w.put("a", 2).unwrap();
    w.delete("a", "");
    assert!(w.keys_of(2).is_empty());

    // a txn's puts attach, a range delete detaches
    w.txn(vec![put_op("c", 1), put_op("d", 2), put_op("e", 2)]).unwrap();
    assert_eq!(w.keys_of(1), keys(&["b", "c"]));
    w.delete("d", "e\0");
    assert!(w.keys_of(2).is_empty());

    // an unknown lease is refused by the store; nothing is attached
    assert_eq!(w.put("x", 9), Err(Error::LeaseNotFound));
    assert_eq!(w.lessor.lease_of(b"x"), None);
}

#[test]
fn revoke_returns_keys_in_order_and_forgets_the_lease() {
    let mut w = World::leader(at_s(0));
    w.lessor.grant(1, 3600, at_s(0)).unwrap();
    w.lessor.grant(2, 10, at_s(0)).unwrap();
    for key in ["m", "b", "z", "a"] {
        w.put(key, 1).unwrap();
    }
    w.put("k", 2).unwrap();
    assert_eq!(w.revoke(1), Ok(keys(&["a", "b", "m", "z"])));
    assert!(!w.lessor.lease_exists(1));
    assert_eq!(w.lessor.time_to_live(1, at_s(0)), None);
    let live: Vec<Bytes> = w.live().into_iter().map(|kv| kv.key).collect();
    assert_eq!(live, keys(&["k"]));
    assert_eq!(w.revoke(1), Err(Error::LeaseNotFound));
    assert_eq!(w.put("a", 1), Err(Error::LeaseNotFound));
    // revoking a lease without keys writes nothing
    w.lessor.grant(3, 10, at_s(0)).unwrap();
    let revision = w.store.current_revision();
    assert_eq!(w.revoke(3), Ok(vec![]));
    assert_eq!(w.store.current_revision(), revision);
    // the primary's queues forgot them
    assert_eq!(w.lessor.expired(at_s(100_000), 10), vec![2]);
}

// ---- renew and expiry -----------------------------------------------------------------------

#[test]
fn renew_resets_expiry() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    lessor.grant(1, 10, at_s(0)).unwrap();
    assert_eq!(lessor.next_deadline(), Some(at_s(10)));
    assert_eq!(lessor.renew(1, at_s(8)), Ok(10));
    assert_eq!(lessor.next_deadline(), Some(at_s(18)));
    assert_eq!(remaining_s(&lessor, 1, at_s(8)), 10);
    assert!(lessor.expired(at_s(12), 10).is_empty());
    assert!(lessor.expired(at_ms(17_999), 10).is_empty());
    assert_eq!(lessor.expired(at_s(18), 10), vec![1]);
    assert_eq!(lessor.renew(2, at_s(8)), Err(Error::LeaseNotFound));
    lessor.invariants();
}

#[test]
fn expired_is_earliest_first_and_retried_after_an_interval() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    for (id, ttl_s) in [(1, 30), (2, 10), (3, 20), (4, 10)] {
        lessor.grant(id, ttl_s, at_s(0)).unwrap();
    }
    assert!(lessor.expired(at_ms(9_999), 10).is_empty());
    assert_eq!(lessor.expired(at_s(25), 2), vec![2, 4], "ties by id, at most max");
    assert_eq!(lessor.expired(at_s(25), 10), vec![3]);
    assert!(lessor.expired(at_s(25), 10).is_empty(), "handed out once");
    // an expired lease cannot be renewed: its revoke is under way
    assert_eq!(lessor.renew(2, at_s(26)), Err(Error::LeaseNotFound));
    let retry_ms = limits::LEASE_EXPIRED_RETRY_INTERVAL_MS;
    assert_eq!(lessor.next_deadline(), Some(at_ms(25_000 + retry_ms)));
    assert!(lessor.expired(at_ms(25_000 + retry_ms - 1), 10).is_empty());
    // all three were handed out at 25 s, so they come back together, by id
    assert_eq!(lessor.expired(at_ms(25_000 + retry_ms), 10), vec![2, 3, 4]);
    assert_eq!(lessor.expired(at_s(30), 10), vec![1]);
    assert_eq!(remaining_s(&lessor, 1, at_s(31)), 0, "never negative");
    lessor.revoke(2).unwrap();
    lessor.invariants();
    assert!(lessor.expired(at_s(30), 0).is_empty());
}

#[test]
fn time_to_live_truncates_to_whole_seconds() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    lessor.grant(1, 10, at_s(0)).unwrap();
    // (now ms, remaining s)
    for (now_ms, expected) in [(0, 10), (1, 9), (500, 9), (9_000, 1), (9_999, 0), (15_000, 0)] {
        assert_eq!(remaining_s(&lessor, 1, at_ms(now_ms)), expected, "at {now_ms} ms");
    }
    assert_eq!(lessor.time_to_live(1, at_s(0)).unwrap().granted_ttl_s, 10);
    // off the leader: the granted TTL, or the checkpointed remaining TTL
    lessor.demote();
    assert_eq!(remaining_s(&lessor, 1, at_s(5)), 10);
    lessor.checkpoint(1, 4);
    assert_eq!(remaining_s(&lessor, 1, at_s(5)), 4);
    lessor.checkpoint(1, 0);
    assert_eq!(remaining_s(&lessor, 1, at_s(5)), 10);
    lessor.checkpoint(99, 4); // unknown: ignored
    lessor.invariants();
}

// ---- leadership -------------------------------------------------------------------------------

#[test]
fn promote_gives_the_full_ttl_plus_extend() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    lessor.grant(1, 10, at_s(0)).unwrap();
    assert_eq!(remaining_s(&lessor, 1, at_s(8)), 2, "2 s left at the old leader");
    lessor.demote();
    lessor.promote(at_s(8), Duration::from_secs(1));
    assert_eq!(remaining_s(&lessor, 1, at_s(8)), 11);
    assert!(lessor.expired(at_ms(18_999), 10).is_empty());
    assert_eq!(lessor.expired(at_s(19), 10), vec![1]);
    lessor.invariants();
}

#[test]
fn promote_uses_the_checkpointed_remaining_ttl() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.grant(1, 3600, at_s(0)).unwrap();
    lessor.grant(2, 3600, at_s(0)).unwrap();
    lessor.checkpoint(1, 1200);
    lessor.promote(at_s(50), Duration::from_millis(1500));
    assert_eq!(lessor.next_deadline(), Some(at_s(350)), "first checkpoints");
    assert_eq!(lessor.expired(at_ms(1_251_500), 10), vec![1]);
    assert_eq!(remaining_s(&lessor, 2, at_s(50)), 3601);
    // promoting a primary starts the clocks over
    lessor.promote(at_s(100), Duration::ZERO);
    assert_eq!(remaining_s(&lessor, 1, at_s(100)), 1200);
    lessor.invariants();
}

#[test]
fn demote_stops_expiry() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    lessor.grant(1, 5, at_s(0)).unwrap();
    lessor.grant(2, 3600, at_s(0)).unwrap();
    assert!(lessor.next_deadline().is_some());
    lessor.demote();
    lessor.demote(); // idempotent
    assert!(!lessor.is_primary());
    assert_eq!(lessor.next_deadline(), None);
    assert!(lessor.expired(at_s(100_000), 10).is_empty());
    assert!(lessor.checkpoints_due(at_s(100_000), 10).is_empty());
    assert_eq!(lessor.renew(1, at_s(1)), Err(Error::NotLeader));
    assert_eq!(remaining_s(&lessor, 1, at_s(100)), 5);
    lessor.invariants();
}

#[test]
fn promote_spreads_piled_up_expiries_over_the_revoke_rate() {
    let rate = limits::LEASE_REVOKE_RATE_PER_S;
    let target = 3 * rate / 4;
    let count = 2 * rate as i64;
    let mut lessor = Lessor::new(MIN_TTL_S);
    for id in 1..=count {
        lessor.grant(id, 60, at_s(0)).unwrap();
    }
    lessor.promote(at_s(100), Duration::from_secs(1));
    lessor.invariants();
    let unspread = at_s(161);
    let mut per_second = std::collections::BTreeMap::<u64, usize>::new();
    for id in 1..=count {
        let expiry = lessor.expiry_of(id).unwrap();
        assert!(expiry >= unspread, "never earlier than the lease's due");
        *per_second.entry((expiry - unspread).as_secs()).or_default() += 1;
    }
    assert!(per_second.values().all(|&n| n <= target), "{per_second:?}");
    assert_eq!(per_second[&0], target, "the first three quarters stay");
    let last = lessor.expiry_of(count).unwrap() - unspread;
    assert!(last < Duration::from_secs(3), "pushed back by rank: {last:?}");

    // below the rate nothing moves
    let mut lessor = Lessor::new(MIN_TTL_S);
    for id in 1..rate as i64 {
        lessor.grant(id, 60, at_s(0)).unwrap();
    }
    lessor.promote(at_s(100), Duration::from_secs(1));
    assert!((1..rate as i64).all(|id| lessor.expiry_of(id) == Some(unspread)));
}

// ---- checkpoints ------------------------------------------------------------------------------

#[test]
fn checkpoints_are_due_only_for_long_leases() {
    let interval_s = limits::LEASE_CHECKPOINT_INTERVAL_MS / 1000;
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    lessor.grant(1, 3600, at_s(0)).unwrap();
    lessor.grant(2, interval_s as i64, at_s(0)).unwrap(); // not longer than the interval
    lessor.grant(3, interval_s as i64 + 1, at_s(0)).unwrap();
    lessor.grant(4, 60, at_s(0)).unwrap();
    assert!(lessor.checkpoints_due(at_s(interval_s - 1), 10).is_empty());
    assert_eq!(lessor.expired(at_s(interval_s - 1), 10), vec![4]);
    lessor.revoke(4).unwrap();
    assert_eq!(lessor.next_deadline(), Some(at_s(interval_s)));
    assert_eq!(lessor.checkpoints_due(at_s(interval_s), 10), vec![(1, 3600 - interval_s as i64), (3, 1)]);
    assert!(lessor.checkpoints_due(at_s(interval_s), 10).is_empty());
    for (id, remaining_ttl_s) in [(1, 3300), (3, 1)] {
        lessor.checkpoint(id, remaining_ttl_s);
    }
    assert!(lessor.checkpoints_due(at_s(2 * interval_s - 1), 10).is_empty());
    // lease 3 has expired by now: no checkpoint for it; rounded up: 2999.5 s -> 3000
    assert_eq!(lessor.checkpoints_due(at_ms(2 * interval_s * 1000 + 500), 10), vec![(1, 3000)]);
    // at most max per call; the rest stays due
    assert_eq!(lessor.checkpoints_due(at_s(3 * interval_s), 0), vec![]);
    assert_eq!(lessor.next_deadline(), Some(at_s(interval_s)), "lease 2's expiry");
    lessor.invariants();

    // after an election the checkpointed remaining TTL counts
    lessor.checkpoint(1, 3000);
    lessor.demote();
    lessor.promote(at_s(5000), Duration::ZERO);
    assert_eq!(remaining_s(&lessor, 1, at_s(5000)), 3000);
}

#[test]
fn renew_after_a_checkpoint_clears_it() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    lessor.grant(1, 3600, at_s(0)).unwrap();
    // a renew with nothing checkpointed needs no checkpoint
    assert_eq!(lessor.renew(1, at_s(10)), Ok(3600));
    assert!(lessor.checkpoints_due(at_s(10), 10).is_empty());
    assert_eq!(lessor.checkpoints_due(at_s(300), 10), vec![(1, 3310)]);
    lessor.checkpoint(1, 3310);
    assert_eq!(remaining_s(&lessor, 1, at_s(300)), 3310);

    assert_eq!(lessor.renew(1, at_s(400)), Ok(3600));
    assert_eq!(remaining_s(&lessor, 1, at_s(400)), 3600, "full TTL, not the checkpoint");
    assert_eq!(lessor.next_deadline(), Some(at_s(400)), "due at once");
    assert_eq!(lessor.checkpoints_due(at_s(400), 10), vec![(1, 0)]);
    lessor.checkpoint(1, 0);
    lessor.invariants();
    // the regular checkpoints go on an interval later
    assert!(lessor.checkpoints_due(at_s(699), 10).is_empty());
    assert_eq!(lessor.checkpoints_due(at_s(700), 10), vec![(1, 3300)]);

    // a new leader gives the renewed lease its full TTL
    let mut follower = Lessor::restore(&lessor.to_images(), [], MIN_TTL_S);
    follower.checkpoint(1, 0);
    follower.promote(at_s(9), Duration::ZERO);
    assert_eq!(remaining_s(&follower, 1, at_s(9)), 3600);
}

#[test]
fn a_checkpoint_computed_before_a_renew_is_cleared_when_it_applies() {
    let mut lessor = Lessor::new(MIN_TTL_S);
    lessor.promote(at_s(0), Duration::ZERO);
    lessor.grant(1, 3600, at_s(0)).unwrap();
    assert_eq!(lessor.checkpoints_due(at_s(300), 10), vec![(1, 3300)]);
    // the renew comes while that checkpoint is still being committed
    assert_eq!(lessor.renew(1, at_s(301)), Ok(3600));
    assert!(lessor.checkpoints_due(at_s(301), 10).is_empty());
    lessor.checkpoint(1, 3300);
    assert_eq!(lessor.checkpoints_due(at_s(302), 10), vec![(1, 0)]);
    lessor.checkpoint(1, 0);
    // without a renew in between, an applied checkpoint stands
    assert_eq!(lessor.checkpoints_due(at_s(602), 10), vec![(1, 3299)]);
    lessor.checkpoint(1, 3299);
    assert!(lessor.checkpoints_due(at_s(603), 10).is_empty());
    lessor.invariants();
}

// ---- images -----------------------------------------------------------------------------------

#[test]
fn images_round_trip() {
    let mut w = World::leader(at_s(0));
    for (id, ttl_s) in [(5, 10), (1, 3600), (-4, 2), (8, 60)] {
        w.lessor.grant(id, ttl_s, at_s(0)).unwrap();
    }
    for (key, lease) in [("a", 1), ("b", 5), ("c", 1), ("d", 0), ("e", -4)] {
        w.put(key, lease).unwrap();
    }
    w.lessor.checkpoint(1, 1234);
    let images = w.lessor.to_images();
    assert_eq!(images.iter().map(|i| i.id).collect::<Vec<_>>(), vec![-4, 1, 5, 8]);

    let restored = Lessor::restore(&images, w.keys_with_leases(), MIN_TTL_S);
    restored.invariants();
    assert!(!restored.is_primary());
    assert_eq!(restored.to_images(), images);
    let mut original = w.lessor.clone();
    original.demote();
    assert_eq!(restored, original);
    for id in restored.leases() {
        assert_eq!(restored.time_to_live(id, at_s(7)), original.time_to_live(id, at_s(7)));
    }
    assert_eq!(restored.lease_of(b"c"), Some(1));

    // a larger minimum TTL raises TTLs on restore, as etcd does; a key naming a lease the image
    // lacks stays unattached
    let stray = [(b("a"), 1), (b("z"), 77)];
    let raised = Lessor::restore(&images, stray, 3);
    raised.invariants();
    assert_eq!(raised.time_to_live(-4, at_s(0)).unwrap().granted_ttl_s, 3);
    assert_eq!((raised.lease_of(b"a"), raised.lease_of(b"z")), (Some(1), None));
}

// ---- randomized -------------------------------------------------------------------------------

/// Random grant / revoke / put / delete / txn / renew / expire / checkpoint / promote / demote /
/// restart sequences; after every step the lessor's invariants hold and it agrees with the
/// store. Returns the final images and store hash, to check that a seed replays exactly, and
/// counts what happened, to check that the run reached the interesting cases.
fn random_run(seed: u64, steps: usize, seen: &mut Seen) -> (Vec<detcd_proto::internalpb::LeaseImage>, u32) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::new();
    let mut now = Instant::ZERO;
    let key = |rng: &mut StdRng| format!("k{}", rng.gen_range(0..12));
    let lease_id = |rng: &mut StdRng| rng.gen_range(1..=8i64);
    for _ in 0..steps {
        // Mostly short steps; now and then a long one, past checkpoint intervals.
        let step_ms = if rng.gen_bool(0.1) { 400_000 } else { 10_000 };
        now = now + Duration::from_millis(rng.gen_range(0..step_ms));
        match rng.gen_range(0..100) {
            0..=14 => {
                let id = lease_id(&mut rng);
                let ttl_s = match rng.gen_range(0..4) {
                    0 => rng.gen_range(301..900),
                    _ => rng.gen_range(-1..40),
                };
                match w.lessor.grant(id, ttl_s, now) {
                    Ok(grant) => {
                        assert_eq!(grant.ttl_s, ttl_s.max(MIN_TTL_S));
                        if w.lessor.is_primary() {
                            assert_eq!(remaining_s(&w.lessor, id, now), grant.ttl_s);
                        }
                    }
                    Err(e) => assert_eq!(e, Error::LeaseExists),
                }
            }
            15..=22 => {
                let id = lease_id(&mut rng);
                let existed = w.lessor.lease_exists(id);
                assert_eq!(w.revoke(id).is_ok(), existed);
            }
            23..=46 => {
                let lease = if rng.gen_bool(0.3) { 0 } else { lease_id(&mut rng) };
                let result = w.put(&key(&mut rng), lease);
                assert!(result.is_ok() || result == Err(Error::LeaseNotFound), "{result:?}");
            }
            47..=50 => {
                let req = PutRequest {
                    key: b(&key(&mut rng)),
                    value: b("kept lease"),
                    ignore_lease: true,
                    ..Default::default()
                };
                let result = w.put_req(req);
                assert!(result.is_ok() || result == Err(Error::KeyNotFound), "{result:?}");
            }
            51..=56 => {
                if rng.gen_bool(0.5) {
                    w.delete(&key(&mut rng), "");
                } else {
                    w.delete("k3", "k7");
                }
            }
            57..=61 => {
                let (a, c) = (key(&mut rng), key(&mut rng));
                let mut ops = vec![put_op(&a, lease_id(&mut rng))];
                if a != c {
                    ops.push(delete_op(&b(&c)));
                }
                let result = w.txn(ops);
                assert!(result.is_ok() || result == Err(Error::LeaseNotFound), "{result:?}");
            }
            62..=73 => {
                let id = lease_id(&mut rng);
                match w.lessor.renew(id, now) {
                    Ok(ttl_s) => {
                        assert_eq!(remaining_s(&w.lessor, id, now), ttl_s);
                        seen.renews += 1;
                    }
                    Err(Error::NotLeader) => assert!(!w.lessor.is_primary()),
                    Err(e) => assert_eq!(e, Error::LeaseNotFound),
                }
            }
            74..=83 => {
                for id in w.lessor.expired(now, rng.gen_range(0..4)) {
                    assert_eq!(remaining_s(&w.lessor, id, now), 0);
                    let doomed = w.revoke(id).unwrap();
                    seen.expired_keys_deleted += doomed.len();
                }
            }
            84..=90 => {
                for (id, remaining_ttl_s) in w.lessor.checkpoints_due(now, rng.gen_range(0..4)) {
                    assert!(remaining_ttl_s >= 0);
                    w.lessor.checkpoint(id, remaining_ttl_s);
                    if remaining_ttl_s == 0 {
                        seen.clearing_checkpoints += 1;
                    } else {
                        seen.checkpoints += 1;
                    }
                }
            }
            91..=94 => {
                // Mostly elections that change the leader; sometimes a re-promotion.
                if !w.lessor.is_primary() || rng.gen_bool(0.2) {
                    let extend = Duration::from_millis(rng.gen_range(0..2_000));
                    w.lessor.promote(now, extend);
                }
            }
            95..=97 => w.lessor.demote(),
            _ => {
                // a restart from the state image
                let restored = Lessor::restore(&w.lessor.to_images(), w.keys_with_leases(), MIN_TTL_S);
                let mut original = w.lessor.clone();
                original.demote();
                assert_eq!(restored, original);
                seen.restores_with_keys += usize::from(w.keys_with_leases().iter().any(|(_, l)| *l != 0));
                w.lessor = restored;
            }
        }
        w.check();
        if let Some(deadline) = w.lessor.next_deadline() {
            assert!(w.lessor.is_primary());
            // nothing is due before the deadline
            let mut probe = w.lessor.clone();
            let before = Instant::from_nanos(deadline.as_nanos().saturating_sub(1));
            if before >= now {
                assert!(probe.expired(before, usize::MAX).is_empty());
                assert!(probe.checkpoints_due(before, usize::MAX).is_empty());
            }
        }
    }
    let hash = w.store.hash_kv(0).expect("hash").hash;
    (w.lessor.to_images(), hash)
}

#[derive(Debug, Default)]
struct Seen {
    expired_keys_deleted: usize,
    checkpoints: usize,
    clearing_checkpoints: usize,
    renews: usize,
    restores_with_keys: usize,
}

#[test]
fn random_operations_keep_the_invariants() {
    let mut seen = Seen::default();
    for seed in 0..32 {
        random_run(seed, 800, &mut seen);
    }
    assert!(seen.expired_keys_deleted > 0, "{seen:?}");
    assert!(seen.checkpoints > 0 && seen.clearing_checkpoints > 0, "{seen:?}");
    assert!(seen.renews > 0 && seen.restores_with_keys > 0, "{seen:?}");
}

#[test]
fn a_seed_replays_exactly() {
    let mut seen = Seen::default();
    assert_eq!(random_run(7, 400, &mut seen), random_run(7, 400, &mut seen));
}
