//! The store's history as events: what watchers that fell behind catch up from.
//!
//! A write hands its events to the watch hub as [`Applied::events`](super::Applied). A watcher
//! that could not take them then (it started in the past, or its stream was full) reads the same
//! events back from the key histories later with [`Store::events_in`]: the histories hold every
//! version since the compaction, so the events can be rebuilt exactly, `prev_kv` included.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use bytes::Bytes;
use detcd_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::key_history::Version;
use super::{KeyRange, Revision, Store};
use crate::Error;

impl Store {
    /// Every change to the keys of `[key, range_end)` (etcd's encoding, see [`KeyRange`]) with
    /// `after_revision < mod_revision.main <= up_to_revision`, ordered by `(main, sub)`
    /// revision. Each event is exactly what the write produced in its
    /// [`Applied::events`](super::Applied): `kv` is the new version (for a delete only `key`
    /// and `mod_revision`), `prev_kv` the key's previous version if that was live — and if it
    /// is still held: a compaction at `c` drops the versions before the first one kept, so an
    /// event at revision `c` may come without the `prev_kv` it had. (etcd's watch also sends
    /// none there: its range at `c - 1` fails as compacted.)
    ///
    /// **Whole revisions.** `max_events` bounds the result, but a revision is never cut in
    /// half: when the limit falls inside a revision, that revision's remaining events are
    /// included too, so the result may exceed `max_events` by up to one revision's events
    /// less one. Hence: if the result holds fewer than `max_events` events, it covers every
    /// revision up to `up_to_revision`; otherwise it covers the revisions up to the last
    /// event's, and the caller continues after that one.
    ///
    /// Errors: [`Error::Compacted`] when `after_revision + 1 < compact_revision` (events below
    /// the compaction are gone; a watch may start *at* the compaction revision, as in etcd);
    /// [`Error::FutureRevision`] when `up_to_revision` is beyond the current revision. An empty
    /// window (`after_revision >= up_to_revision`) gives no events.
    ///
    /// Cost: one ordered walk over the keys of the range (a binary search in each key's
    /// history), then `O(log k)` per event returned, `k` being the keys with events in the
    /// window. The store has no revision index, so a wide range over many keys costs that
    /// walk even when few of them changed.
    pub fn events_in(
        &self,
        key: &[u8],
        range_end: &[u8],
        after_revision: i64,
        up_to_revision: i64,
        max_events: usize,
    ) -> Result<Vec<Event>, Error> {
        assert!(max_events > 0, "events_in needs room for at least one event");
        if up_to_revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        if after_revision.saturating_add(1) < self.compact_revision {
            return Err(Error::Compacted);
        }
        if after_revision >= up_to_revision {
            return Ok(Vec::new());
        }

        // One cursor per key with versions in the window, merged by revision. Revisions are
        // unique across keys, so the merge order is total and deterministic.
        struct Cursor<'a> {
            key: &'a Bytes,
            versions: &'a [Version],
            next: usize,
            end: usize,
        }
        let mut cursors = Vec::new();
        let mut heap: BinaryHeap<Reverse<(Revision, usize)>> = BinaryHeap::new();
        for (key, history) in KeyRange::new(key, range_end).iter(&self.keys) {
            let versions = history.versions();
            let next = versions.partition_point(|v| v.mod_revision.main <= after_revision);
            let end = versions.partition_point(|v| v.mod_revision.main <= up_to_revision);
            if next < end {
                heap.push(Reverse((versions[next].mod_revision, cursors.len())));
                cursors.push(Cursor { key, versions, next, end });
            }
        }

        let mut events: Vec<Event> = Vec::new();
        while let Some(Reverse((revision, i))) = heap.pop() {
            let last_main = events.last().map(event_main);
            if events.len() >= max_events && last_main != Some(revision.main) {
                break;
            }
            let cursor = &mut cursors[i];
            events.push(event_of(cursor.key, cursor.versions, cursor.next));
            cursor.next += 1;
            if cursor.next < cursor.end {
                heap.push(Reverse((cursor.versions[cursor.next].mod_revision, i)));
            }
        }
        Ok(events)
    }
}

fn event_main(event: &Event) -> i64 {
    event.kv.as_ref().expect("events carry a kv").mod_revision
}

/// The event that wrote `versions[i]`, as the write produced it.
fn event_of(key: &Bytes, versions: &[Version], i: usize) -> Event {
    let version = &versions[i];
    let prev_kv =
        i.checked_sub(1).map(|p| &versions[p]).filter(|prev| !prev.is_tombstone()).map(|prev| prev.to_key_value(key));
    if version.is_tombstone() {
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue { key: key.clone(), mod_revision: version.mod_revision.main, ..Default::default() }),
            prev_kv,
        }
    } else {
        Event { r#type: EventType::Put as i32, kv: Some(version.to_key_value(key)), prev_kv }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use detcd_proto::etcdserverpb::{
        request_op, CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
    };
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use crate::mvcc::NoLeases;

    const KEYS: [&[u8]; 6] = [b"a", b"ab", b"b", b"ba", b"c", b"d"];

    fn put(key: &[u8], value: u64) -> PutRequest {
        PutRequest { key: Bytes::copy_from_slice(key), value: Bytes::from(value.to_string()), ..Default::default() }
    }

    fn delete(key: &[u8], range_end: &[u8]) -> DeleteRangeRequest {
        DeleteRangeRequest {
            key: Bytes::copy_from_slice(key),
            range_end: Bytes::copy_from_slice(range_end),
            ..Default::default()
        }
    }

    /// Random writes (puts, deletes of keys and ranges, txns of several writes including a
    /// from-key delete followed by a put of a deleted key); returns every event the applies
    /// produced, in order.
    fn random_writes(store: &mut Store, rng: &mut StdRng, writes: usize) -> Vec<Event> {
        let mut events = Vec::new();
        for i in 0..writes {
            let key = KEYS[rng.gen_range(0..KEYS.len())];
            let applied = match rng.gen_range(0..10) {
                0..=4 => store.put(&put(key, i as u64), &NoLeases).map(|a| a.events),
                5..=6 => store.delete_range(&delete(key, b"")).map(|a| a.events),
                7 => store.delete_range(&delete(key, b"c")).map(|a| a.events),
                _ => {
                    let mut ops = Vec::new();
                    if rng.gen_bool(0.5) {
                        ops.push(RequestOp {
                            request: Some(request_op::Request::RequestDeleteRange(delete(b"b", b"\0"))),
                        });
                    }
                    for key in [b"a".as_slice(), b"ab", b"c"] {
                        if rng.gen_bool(0.6) {
                            ops.push(RequestOp { request: Some(request_op::Request::RequestPut(put(key, i as u64))) });
                        }
                    }
                    let txn = TxnRequest { success: ops, ..Default::default() };
                    store.txn(&txn, &NoLeases).map(|a| a.events)
                }
            };
            events.extend(applied.expect("writes in these tests are valid"));
        }
        events
    }

    fn main_of(e: &Event) -> i64 {
        event_main(e)
    }

    #[test]
    fn whole_history_equals_the_applied_events() {
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut store = Store::new();
            let applied = random_writes(&mut store, &mut rng, 300);
            let current = store.current_revision();
            let all = store.events_in(b"\0", b"\0", 0, current, usize::MAX).unwrap();
            assert_eq!(all, applied, "seed {seed}");

            // Any range, any window: the applied events filtered the same way.
            for _ in 0..50 {
                let (k, end): (&[u8], &[u8]) = match rng.gen_range(0..4) {
                    0 => (KEYS[rng.gen_range(0..KEYS.len())], b""),
                    1 => (b"a", b"b"),
                    2 => (b"b", b"\0"),
                    _ => (b"ab", b"c"),
                };
                let after = rng.gen_range(0..=current);
                let up_to = rng.gen_range(after..=current);
                let range = KeyRange::new(k, end);
                let want: Vec<Event> = applied
                    .iter()
                    .filter(|e| {
                        range.contains(&e.kv.as_ref().unwrap().key) && main_of(e) > after && main_of(e) <= up_to
                    })
                    .cloned()
                    .collect();
                let got = store.events_in(k, end, after, up_to, usize::MAX).unwrap();
                assert_eq!(got, want, "seed {seed} range {k:?}..{end:?} ({after}, {up_to}]");

                // A limit never cuts a revision and yields a prefix of the whole answer.
                let max = rng.gen_range(1..6);
                let limited = store.events_in(k, end, after, up_to, max).unwrap();
                assert_eq!(&want[..limited.len()], &limited[..]);
                if limited.len() < want.len() {
                    assert!(limited.len() >= max, "a short answer covers the window");
                    let last = main_of(limited.last().unwrap());
                    assert!(main_of(&want[limited.len()]) > last, "revision {last} was cut in half");
                    // The excess is at most the rest of the last revision.
                    assert!(limited[..max - 1].iter().all(|e| main_of(e) <= last));
                    assert!(limited[max - 1..].iter().all(|e| main_of(e) == last));
                }
            }
        }
    }

    #[test]
    fn after_compaction_events_from_the_compaction_revision_remain() {
        for seed in 0..20 {
            let mut rng = StdRng::seed_from_u64(100 + seed);
            let mut store = Store::new();
            let mut applied = random_writes(&mut store, &mut rng, 200);
            let compact_at = rng.gen_range(2..=store.current_revision());
            store.compact(&CompactionRequest { revision: compact_at, physical: false }).unwrap();
            applied.extend(random_writes(&mut store, &mut rng, 50));
            let current = store.current_revision();

            assert_eq!(store.events_in(b"\0", b"\0", compact_at - 2, current, 10), Err(Error::Compacted));
            assert_eq!(store.events_in(b"\0", b"\0", 0, current + 1, 10), Err(Error::FutureRevision));
            // Every event from the compaction revision on, deletes at it included (etcd #18089);
            // a prev_kv older than the compaction revision is gone for the events *at* it.
            let want: Vec<Event> = applied
                .iter()
                .filter(|e| main_of(e) >= compact_at)
                .map(|e| {
                    let mut e = e.clone();
                    if main_of(&e) == compact_at && e.prev_kv.as_ref().is_some_and(|p| p.mod_revision < compact_at) {
                        e.prev_kv = None;
                    }
                    e
                })
                .collect();
            let got = store.events_in(b"\0", b"\0", compact_at - 1, current, usize::MAX).unwrap();
            assert_eq!(got, want, "seed {seed}, compacted at {compact_at}");
        }
    }

    #[test]
    fn delete_at_the_compaction_revision_is_watchable() {
        // etcd #18089: put k ×3, delete k, put k, compact at the delete, watch from it.
        let mut store = Store::new();
        for v in 2..=4 {
            store.put(&put(b"k", v), &NoLeases).unwrap();
        }
        store.delete_range(&delete(b"k", b"")).unwrap(); // 5
        store.put(&put(b"k", 6), &NoLeases).unwrap(); // 6
        store.compact(&CompactionRequest { revision: 5, physical: false }).unwrap();
        let events = store.events_in(b"k", b"", 4, 6, 100).unwrap();
        let kinds: Vec<(i32, i64)> = events.iter().map(|e| (e.r#type, main_of(e))).collect();
        assert_eq!(kinds, [(EventType::Delete as i32, 5), (EventType::Put as i32, 6)]);
        assert_eq!(events[0].prev_kv, None, "the value before 5 is compacted");
        assert_eq!(events[1].prev_kv, None, "the key was deleted before 6");
    }
}
