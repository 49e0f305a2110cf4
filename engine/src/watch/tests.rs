//! Scenario tests of the watch hub, and a seeded randomized test that checks every watch
//! guarantee on every watcher's received stream.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use detcd_proto::etcdserverpb::{
    request_op, watch_create_request::FilterType, watch_request, CompactionRequest, DeleteRangeRequest, PutRequest,
    RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use detcd_proto::mvccpb::{event::EventType, Event};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::limits::{
    MAX_REQUEST_BYTES, WATCH_STREAM_CONTROL_RESPONSES_MAX, WATCH_STREAM_RESPONSES_MAX, WATCH_SYNC_RESPONSE_EVENTS_MAX,
};
use crate::mvcc::{KeyRange, NoLeases, Store};
use crate::time::{Duration, Instant};
use crate::Error;

const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

// ---- the world: a store, a hub, a clock -------------------------------------------------

struct World {
    store: Store,
    hub: WatchHub,
    now: Instant,
    /// Every event every write produced, in order.
    log: Vec<Event>,
    /// Every revision compacted at.
    compactions: BTreeSet<i64>,
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest { key: b(key), value: b(value), ..Default::default() }
}

fn del_req(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { key: b(key), range_end: b(range_end), ..Default::default() }
}

fn watch_req(key: &str, range_end: &str, start_revision: i64) -> WatchCreateRequest {
    WatchCreateRequest { key: b(key), range_end: b(range_end), start_revision, ..Default::default() }
}

fn rev_of(e: &Event) -> i64 {
    e.kv.as_ref().unwrap().mod_revision
}

fn key_of(e: &Event) -> &[u8] {
    &e.kv.as_ref().unwrap().key
}

fn is_progress(r: &WatchResponse) -> bool {
    r.events.is_empty() && !r.created && !r.canceled && r.compact_revision == 0
}

impl World {
    fn new() -> World {
        let store = Store::new();
        let now = Instant::from_nanos(1_000_000_000);
        World {
            hub: WatchHub::new(now, PROGRESS_INTERVAL, &store),
            store,
            now,
            log: Vec::new(),
            compactions: BTreeSet::new(),
        }
    }

    fn applied(&mut self, events: Vec<Event>) -> i64 {
        if !events.is_empty() {
            self.hub.notify(&events, self.store.current_revision());
            self.log.extend(events);
        }
        self.hub.invariants();
        self.store.current_revision()
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        let events = self.store.put(&put_req(key, value), &NoLeases).unwrap().events;
        self.applied(events)
    }

    fn delete(&mut self, key: &str, range_end: &str) -> i64 {
        let events = self.store.delete_range(&del_req(key, range_end)).unwrap().events;
        self.applied(events)
    }

    fn txn(&mut self, ops: Vec<request_op::Request>) -> i64 {
        let txn = TxnRequest {
            success: ops.into_iter().map(|r| RequestOp { request: Some(r) }).collect(),
            ..Default::default()
        };
        let events = self.store.txn(&txn, &NoLeases).unwrap().events;
        self.applied(events)
    }

    fn compact(&mut self, revision: i64) {
        self.store.compact(&CompactionRequest { revision, physical: false }).unwrap();
        self.compactions.insert(revision);
    }

    fn sync(&mut self) {
        self.hub.sync(self.now, &self.store);
        self.hub.invariants();
    }

    /// Syncs while the hub says there is work ready now.
    fn sync_ready(&mut self) {
        for _ in 0..10_000 {
            match self.hub.next_deadline() {
                Some(d) if d <= self.now => self.sync(),
                _ => return,
            }
        }
        panic!("sync never settles");
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
    }

    fn create(&mut self, stream: StreamId, req: WatchCreateRequest) {
        self.hub.create(stream, &req);
        self.hub.invariants();
    }

    /// Creates a watcher and returns its created response (the stream must be empty).
    fn watch(&mut self, stream: StreamId, req: WatchCreateRequest) -> WatchResponse {
        assert_eq!(self.hub.queued_responses(stream), 0);
        self.create(stream, req);
        let created = self.hub.poll_response(stream).expect("created");
        assert!(created.created);
        created
    }

    fn poll_all(&mut self, stream: StreamId) -> Vec<WatchResponse> {
        let mut out = Vec::new();
        while let Some(r) = self.hub.poll_response(stream) {
            out.push(r);
            self.hub.invariants();
        }
        out
    }

    /// Fills the empty `stream`'s queue to its bound: [`WATCH_STREAM_RESPONSES_MAX`] new
    /// watchers of `key`, one write of `key`, one events response each. A watcher without a
    /// response waiting then finds no room for its next one (a response waiting takes its
    /// watcher's later events: see `StreamQueue`).
    fn fill_queue(&mut self, stream: StreamId, key: &str) {
        for _ in 0..WATCH_STREAM_RESPONSES_MAX {
            self.watch(stream, watch_req(key, "", 0));
        }
        self.put(key, "filler");
        assert_eq!(self.hub.queued_responses(stream), WATCH_STREAM_RESPONSES_MAX);
    }

    /// Drains `stream` completely, syncing as the hub asks, and returns what it got.
    fn drain(&mut self, stream: StreamId) -> Vec<WatchResponse> {
        let mut out = Vec::new();
        loop {
            self.sync_ready();
            let got = self.poll_all(stream);
            if got.is_empty() {
                return out;
            }
            out.extend(got);
        }
    }

    /// The events the log holds for a watcher, as it should receive them.
    fn expected(&self, req: &WatchCreateRequest, from: i64, to: i64) -> Vec<Event> {
        expected_events(&self.log, req, from, to)
    }
}

fn expected_events(log: &[Event], req: &WatchCreateRequest, from: i64, to: i64) -> Vec<Event> {
    let key = if req.key.is_empty() { Bytes::from_static(b"\0") } else { req.key.clone() };
    let range = KeyRange::new(&key, &req.range_end);
    let no_put = req.filters.contains(&(FilterType::Noput as i32));
    let no_delete = req.filters.contains(&(FilterType::Nodelete as i32));
    log.iter()
        .filter(|e| range.contains(key_of(e)) && rev_of(e) >= from && rev_of(e) <= to)
        .filter(|e| {
            let put = e.r#type == EventType::Put as i32;
            !(put && no_put || !put && no_delete)
        })
        .map(|e| Event { prev_kv: if req.prev_kv { e.prev_kv.clone() } else { None }, ..e.clone() })
        .collect()
}

fn events_of(responses: &[WatchResponse], watch_id: WatchId) -> Vec<Event> {
    responses.iter().filter(|r| r.watch_id == watch_id).flat_map(|r| r.events.clone()).collect()
}

// ---- create -------------------------------------------------------------------------------

#[test]
fn create_assigns_ids_and_replies_created_at_the_current_revision() {
    let mut w = World::new();
    w.put("a", "1");
    let ids: Vec<(i64, i64)> = [0, 0, 3, 0, 0]
        .into_iter()
        .map(|id| {
            let created = w.watch(1, WatchCreateRequest { watch_id: id, ..watch_req("a", "", 0) });
            assert!(!created.canceled);
            (created.watch_id, created.header.unwrap().revision)
        })
        .collect();
    assert_eq!(ids, [(0, 2), (1, 2), (3, 2), (2, 2), (4, 2)], "auto ids from 0, skipping the client's 3");
    // Ids are per stream.
    assert_eq!(w.watch(2, watch_req("a", "", 0)).watch_id, 0);
    // A canceled id is not handed out again by the auto-assignment.
    w.hub.cancel(1, 4);
    assert!(w.poll_all(1)[0].canceled);
    assert_eq!(w.watch(1, watch_req("a", "", 0)).watch_id, 5);
    // The client may reuse it explicitly.
    let again = w.watch(1, WatchCreateRequest { watch_id: 4, ..watch_req("a", "", 0) });
    assert_eq!((again.watch_id, again.canceled), (4, false));
}

#[test]
fn refused_creates_mirror_etcd() {
    let mut w = World::new();
    w.put("a", "1");
    w.watch(1, WatchCreateRequest { watch_id: 7, ..watch_req("a", "", 0) });
    let cases = [
        (WatchCreateRequest { watch_id: 7, ..watch_req("b", "", 0) }, CANCEL_REASON_DUPLICATE_ID),
        (watch_req("b", "a", 0), CANCEL_REASON_EMPTY_RANGE),
        (watch_req("b", "b", 0), CANCEL_REASON_EMPTY_RANGE),
        (watch_req("a", "", -1), Error::Compacted.message()),
    ];
    for (req, reason) in cases {
        let r = w.watch(1, req.clone());
        assert_eq!(
            (r.watch_id, r.created, r.canceled, r.cancel_reason.as_str()),
            (INVALID_WATCH_ID, true, true, reason),
            "{req:?}"
        );
        assert_eq!(r.header.unwrap().revision, 2);
    }
    assert_eq!(CANCEL_REASON_DUPLICATE_ID, "mvcc: duplicate watch ID provided on the WatchStream");
    assert_eq!(w.hub.watcher_count(), 1);
    // "\0" as range end is from-key, never an empty range.
    assert!(!w.watch(1, watch_req("b", "\0", 0)).canceled);
}

// ---- events -------------------------------------------------------------------------------

#[test]
fn events_are_filtered_and_carry_prev_kv_only_when_asked() {
    let mut w = World::new();
    w.put("k", "1"); // 2
    let plain = w.watch(1, watch_req("k", "", 0)).watch_id;
    let with_prev = w.watch(1, WatchCreateRequest { prev_kv: true, ..watch_req("k", "", 0) }).watch_id;
    let no_put =
        w.watch(1, WatchCreateRequest { filters: vec![FilterType::Noput as i32], ..watch_req("k", "", 0) }).watch_id;
    let no_delete =
        w.watch(1, WatchCreateRequest { filters: vec![FilterType::Nodelete as i32], ..watch_req("k", "", 0) }).watch_id;
    w.put("k", "2"); // 3
    w.put("other", "x"); // 4
    w.delete("k", ""); // 5
    let got = w.poll_all(1);
    let summary = |id: WatchId| -> Vec<(i32, i64, Option<Bytes>)> {
        events_of(&got, id).iter().map(|e| (e.r#type, rev_of(e), e.prev_kv.as_ref().map(|p| p.value.clone()))).collect()
    };
    let (put, del) = (EventType::Put as i32, EventType::Delete as i32);
    assert_eq!(summary(plain), [(put, 3, None), (del, 5, None)]);
    assert_eq!(summary(with_prev), [(put, 3, Some(b("1"))), (del, 5, Some(b("2")))]);
    assert_eq!(summary(no_put), [(del, 5, None)]);
    assert_eq!(summary(no_delete), [(put, 3, None)]);
    // A delete event carries only the key and its revision.
    let delete = &events_of(&got, plain)[1];
    let kv = delete.kv.as_ref().unwrap();
    assert_eq!((kv.version, kv.create_revision, kv.value.len()), (0, 0, 0));
    // The revisions not yet read went into one response per watcher, headed by its last.
    assert!(got.iter().all(|r| r.header.as_ref().unwrap().revision >= rev_of(r.events.last().unwrap())));
}

#[test]
fn key_ranges_follow_etcd_encoding() {
    let mut w = World::new();
    let single = w.watch(1, watch_req("a", "", 0)).watch_id;
    let prefix = w.watch(1, watch_req("a", "b", 0)).watch_id;
    let from_key = w.watch(1, watch_req("b", "\0", 0)).watch_id;
    let all = w.watch(1, watch_req("", "\0", 0)).watch_id;
    let empty_key = w.watch(1, watch_req("", "", 0)).watch_id;
    for key in ["\0", "a", "ab", "b", "c"] {
        w.put(key, "v");
    }
    let got = w.poll_all(1);
    let keys = |id: WatchId| -> Vec<Vec<u8>> { events_of(&got, id).iter().map(|e| key_of(e).to_vec()).collect() };
    let k = |s: &[&str]| -> Vec<Vec<u8>> { s.iter().map(|s| s.as_bytes().to_vec()).collect() };
    assert_eq!(keys(single), k(&["a"]));
    assert_eq!(keys(prefix), k(&["a", "ab"]));
    assert_eq!(keys(from_key), k(&["b", "c"]));
    assert_eq!(keys(all), k(&["\0", "a", "ab", "b", "c"]));
    assert_eq!(keys(empty_key), k(&["\0"]), "an empty key is \"\\0\"");
}

#[test]
fn a_revision_arrives_whole_in_one_response() {
    let mut w = World::new();
    let id = w.watch(1, watch_req("", "\0", 0)).watch_id;
    w.put("x", "0");
    assert_eq!(w.poll_all(1).len(), 1);
    let rev = w.txn(vec![
        request_op::Request::RequestPut(put_req("a", "1")),
        request_op::Request::RequestPut(put_req("b", "2")),
        request_op::Request::RequestDeleteRange(del_req("x", "")),
    ]);
    let got = w.poll_all(1);
    assert_eq!(got.len(), 1);
    let txn = &got[0];
    assert_eq!((txn.watch_id, txn.header.as_ref().unwrap().revision), (id, rev));
    let keys: Vec<&[u8]> = txn.events.iter().map(key_of).collect();
    assert_eq!(keys, [b"a".as_slice(), b"b", b"x"], "sub-revision order");
}

// ---- start revisions ----------------------------------------------------------------------

#[test]
fn a_past_start_revision_catches_up_from_the_store_then_follows_writes() {
    let mut w = World::new();
    for i in 0..5 {
        w.put("k", &i.to_string()); // 2..=6
    }
    let req = WatchCreateRequest { prev_kv: true, ..watch_req("k", "", 3) };
    let created = w.watch(1, req.clone());
    assert_eq!(w.hub.unsynced_count(), 1);
    // Writes before the catch-up are not sent by notify: they come from the store, once.
    w.put("k", "late"); // 7
    assert_eq!(w.hub.queued_responses(1), 0);
    assert_eq!(w.hub.next_deadline(), Some(Instant::ZERO), "catch-up is due now");
    w.sync();
    assert_eq!(w.hub.unsynced_count(), 0);
    w.put("k", "synced"); // 8
    let got = w.poll_all(1);
    assert_eq!(got.len(), 1, "the write's events joined the catch-up response, still unread");
    assert_eq!(got[0].header.as_ref().unwrap().revision, 8);
    assert_eq!(events_of(&got, created.watch_id), w.expected(&req, 3, 8));
}

#[test]
fn catch_up_is_bounded_and_never_splits_a_revision() {
    let mut w = World::new();
    for i in 0..WATCH_SYNC_RESPONSE_EVENTS_MAX - 2 {
        w.put(&format!("k{i:05}"), "v");
    }
    let puts = (0..6).map(|i| request_op::Request::RequestPut(put_req(&format!("t{i}"), "v"))).collect();
    let txn_rev = w.txn(puts);
    for i in 0..10 {
        w.put(&format!("z{i}"), "v");
    }
    let req = watch_req("", "\0", 1);
    let id = w.watch(1, req.clone()).watch_id;
    w.sync();
    let first = w.hub.poll_response(1).unwrap();
    assert_eq!(first.events.len(), WATCH_SYNC_RESPONSE_EVENTS_MAX + 4);
    assert_eq!(rev_of(first.events.last().unwrap()), txn_rev);
    assert_eq!(w.hub.unsynced_count(), 1, "more to catch up");
    let rest = w.drain(1);
    let mut all = vec![first];
    all.extend(rest);
    assert_eq!(events_of(&all, id), w.expected(&req, 1, w.store.current_revision()));
}

#[test]
fn a_future_start_revision_waits_and_progress_never_claims_below_it() {
    let mut w = World::new();
    w.put("k", "1"); // 2
    let req = WatchCreateRequest { progress_notify: true, ..watch_req("k", "", 5) };
    let id = w.watch(1, req.clone()).watch_id;
    w.put("k", "2"); // 3
                     // Neither a requested nor a periodic progress notification may claim 3: a client
                     // resuming from 4 would get an event its watch started after (etcd #20221).
    w.hub.request_progress(1);
    w.advance(PROGRESS_INTERVAL);
    w.sync();
    assert!(w.poll_all(1).is_empty());
    w.put("k", "3"); // 4: the watcher is now synced, and the progress request answered.
    let got = w.poll_all(1);
    assert_eq!(got.len(), 1);
    assert!(is_progress(&got[0]) && got[0].watch_id == INVALID_WATCH_ID);
    assert_eq!(got[0].header.as_ref().unwrap().revision, 4);
    w.put("k", "4"); // 5
    w.put("k", "5"); // 6
    let got = w.poll_all(1);
    assert_eq!(events_of(&got, id), w.expected(&req, 5, 6));
}

// ---- compaction ---------------------------------------------------------------------------

#[test]
fn a_start_below_the_compaction_is_created_then_canceled_with_compact_revision() {
    let mut w = World::new();
    for i in 0..5 {
        w.put("k", &i.to_string()); // 2..=6
    }
    w.compact(5);
    w.create(1, watch_req("k", "", 4));
    w.sync();
    let got = w.poll_all(1);
    assert_eq!(got.len(), 2);
    assert!(got[0].created && !got[0].canceled);
    let c = &got[1];
    assert_eq!((c.watch_id, c.canceled, c.compact_revision, c.cancel_reason.as_str()), (got[0].watch_id, true, 5, ""));
    assert!(c.events.is_empty());
    assert_eq!(w.hub.watcher_count(), 0, "the watcher is gone");
}

#[test]
fn a_watch_at_the_compaction_revision_sees_its_delete() {
    // etcd #18089 / #19179: compacting at a delete lost that delete for a watch from it.
    let mut w = World::new();
    for v in ["2", "3", "4"] {
        w.put("k", v);
    }
    let deleted_at = w.delete("k", ""); // 5
    w.put("k", "6"); // 6
    w.compact(deleted_at);
    let req = watch_req("k", "", deleted_at);
    let id = w.watch(1, req.clone()).watch_id;
    let got = w.drain(1);
    let events = events_of(&got, id);
    assert_eq!(events, w.expected(&req, deleted_at, 6));
    assert_eq!(events[0].r#type, EventType::Delete as i32);
}

// ---- cancel and close ---------------------------------------------------------------------

#[test]
fn cancel_replies_once_and_stops_events_close_drops_everything() {
    let mut w = World::new();
    let a = w.watch(1, watch_req("k", "", 0)).watch_id;
    let b = w.watch(1, watch_req("k", "", 0)).watch_id;
    w.put("k", "1"); // 2
    w.hub.cancel(1, a);
    w.hub.cancel(1, 99); // unknown: no reply, as in etcd
    w.put("k", "2"); // 3
    let got = w.poll_all(1);
    let shape: Vec<(WatchId, bool, usize)> = got.iter().map(|r| (r.watch_id, r.canceled, r.events.len())).collect();
    assert_eq!(
        shape,
        [(a, false, 1), (b, false, 1), (a, true, 0), (b, false, 1)],
        "queued events go out before the cancel reply; none after"
    );
    assert_eq!(got[2].header.as_ref().unwrap().revision, 2);
    w.put("k", "3");
    w.hub.close_stream(1);
    w.hub.invariants();
    assert_eq!(w.hub.watcher_count(), 0);
    assert!(w.hub.poll_response(1).is_none());
    assert_eq!(w.hub.ready_streams().count(), 0);
}

// ---- flow control -------------------------------------------------------------------------

#[test]
fn a_slow_stream_never_blocks_writes_and_later_catches_up_without_loss_or_duplicates() {
    // etcd #17529: events were lost when a stream starved.
    let mut w = World::new();
    let req = WatchCreateRequest { prev_kv: true, ..watch_req("", "\0", 0) };
    let fast = w.watch(2, req.clone()).watch_id;
    // The slow stream is full before its watcher is created, so that the watcher has no
    // response waiting to take its events: it finds no room at once.
    w.fill_queue(1, "filler");
    let start = w.store.current_revision() + 1;
    let slow = 1000;
    w.create(1, WatchCreateRequest { watch_id: slow, ..req.clone() });
    let writes = 3 * WATCH_STREAM_RESPONSES_MAX;
    let mut fast_got = Vec::new();
    for i in 0..writes {
        w.put(&format!("k{}", i % 7), &i.to_string());
        if i % 3 == 0 {
            w.delete(&format!("k{}", (i + 1) % 7), "");
        }
        fast_got.extend(w.poll_all(2));
        w.sync_ready();
    }
    let current = w.store.current_revision();
    assert_eq!(
        w.hub.queued_responses(1),
        WATCH_STREAM_RESPONSES_MAX + 1,
        "the slow stream's queue stops at its bound (and the created reply)"
    );
    assert_eq!(w.hub.unsynced_count(), 1, "its watcher fell back to the store");
    assert_eq!(w.hub.next_deadline(), None, "nothing to do until the slow client reads");
    assert_eq!(events_of(&fast_got, fast), w.expected(&req, 2, current));

    let slow_got = w.drain(1);
    assert_eq!(w.hub.unsynced_count(), 0);
    assert_eq!(events_of(&slow_got, slow), w.expected(&req, start, current));
    // Still in step with new writes.
    w.put("after", "1");
    assert_eq!(events_of(&w.poll_all(1), slow).len(), 1);
}

#[test]
fn a_slow_reader_gets_every_event_once_in_order_in_fewer_responses() {
    // 100 watchers of one key on one stream, whose client takes one response per write while
    // each write has an event for all 100: their responses wait, and take the later events.
    let mut w = World::new();
    let watchers = 100;
    let writes = 1000;
    let req = WatchCreateRequest { prev_kv: true, ..watch_req("k", "", 0) };
    let ids: Vec<WatchId> = (0..watchers).map(|_| w.watch(1, req.clone()).watch_id).collect();
    let start = w.store.current_revision() + 1;
    let mut got = Vec::new();
    for i in 0..writes {
        w.put("k", &i.to_string());
        got.extend(w.hub.poll_response(1));
        w.sync_ready();
        assert!(w.hub.queued_responses(1) <= watchers, "at most one response waits per watcher");
    }
    assert_eq!(w.hub.unsynced_count(), 0, "no watcher had to fall back to the store");
    got.extend(w.drain(1));
    let current = w.store.current_revision();
    for id in ids {
        // Every event, once, in order, with its prev_kv, and no revision split.
        assert_eq!(events_of(&got, id), w.expected(&req, start, current), "watcher {id}");
    }
    assert!(got.iter().all(|r| r.events.len() <= WATCH_SYNC_RESPONSE_EVENTS_MAX));
    let headers: Vec<i64> = got.iter().map(|r| r.header.as_ref().unwrap().revision).collect();
    assert!(headers.windows(2).all(|h| h[0] <= h[1]), "header revisions never go back");
    // One response per write read, plus what waited at the end: not one per watcher per write.
    assert!(got.len() <= writes + watchers, "{} responses for {} events", got.len(), watchers * writes);
}

#[test]
fn a_slow_stream_whose_history_is_compacted_is_canceled_with_compact_revision() {
    let mut w = World::new();
    let req = watch_req("k", "", 0);
    let id = w.watch(1, req.clone()).watch_id;
    w.put("k", "first"); // 2: queued, unread
                         // Replies queued behind its waiting response fill the stream and close that response to
                         // more events (no event may overtake a reply): the next write finds no room.
    for _ in 1..WATCH_STREAM_RESPONSES_MAX {
        w.create(1, watch_req("f", "", 0));
    }
    assert_eq!(w.hub.queued_responses(1), WATCH_STREAM_RESPONSES_MAX);
    for i in 0..5 {
        w.put("k", &i.to_string());
    }
    assert_eq!(w.hub.unsynced_count(), 1);
    let compact_at = w.store.current_revision() - 1;
    w.compact(compact_at);
    let got = w.drain(1);
    let last = got.last().unwrap();
    assert_eq!((last.watch_id, last.canceled, last.compact_revision), (id, true, compact_at));
    // What arrived before the cancel is gap-free from the start.
    let events = events_of(&got, id);
    assert_eq!(events, w.expected(&req, 2, rev_of(events.last().unwrap())));
    assert_eq!(w.hub.watcher_count(), WATCH_STREAM_RESPONSES_MAX - 1, "only the other watchers are left");
}

#[test]
fn requests_are_accepted_while_there_is_room_for_their_replies() {
    let mut w = World::new();
    w.fill_queue(1, "k");
    let mut replies = 0;
    while w.hub.accepts_requests(1) {
        w.create(1, watch_req("k", "", 0));
        replies += 1;
    }
    assert_eq!(replies, WATCH_STREAM_CONTROL_RESPONSES_MAX);
    w.hub.poll_response(1);
    assert!(w.hub.accepts_requests(1));
}

// ---- progress -----------------------------------------------------------------------------

#[test]
fn a_progress_request_waits_until_the_stream_caught_up() {
    // etcd #15220: a progress notification went out before events it vouched for.
    let mut w = World::new();
    for i in 0..20 {
        w.put("k", &i.to_string());
    }
    let req = watch_req("k", "", 2);
    let lagging = w.watch(1, req.clone()).watch_id;
    w.watch(1, watch_req("other", "", 0));
    w.hub.request_progress(1);
    w.hub.request_progress(1); // answered by the same response
    assert_eq!(w.hub.queued_responses(1), 0, "not before the catch-up");
    w.put("k", "more");
    let got = w.drain(1);
    let progress: Vec<usize> = (0..got.len()).filter(|&i| is_progress(&got[i])).collect();
    assert_eq!(progress.len(), 1);
    let p = &got[progress[0]];
    assert_eq!(p.watch_id, INVALID_WATCH_ID);
    let claimed = p.header.as_ref().unwrap().revision;
    assert_eq!(claimed, w.store.current_revision());
    assert_eq!(
        events_of(&got[..progress[0]], lagging),
        w.expected(&req, 2, claimed),
        "every event up to the claim came first"
    );
}

#[test]
fn a_progress_request_on_a_synced_or_empty_stream_is_answered_at_once() {
    let mut w = World::new();
    w.put("k", "1");
    w.hub.request_progress(3);
    let got = w.poll_all(3);
    assert_eq!(got.len(), 1);
    assert!(is_progress(&got[0]) && got[0].watch_id == INVALID_WATCH_ID);
    w.watch(3, watch_req("k", "", 0));
    w.hub.handle_request(
        3,
        &WatchRequest { request_union: Some(watch_request::RequestUnion::ProgressRequest(WatchProgressRequest {})) },
    );
    let got = w.poll_all(3);
    assert_eq!(got[0].header.as_ref().unwrap().revision, 2);
}

#[test]
fn periodic_progress_goes_to_idle_synced_watchers_that_asked() {
    let mut w = World::new();
    let notify = |key: &str| WatchCreateRequest { progress_notify: true, ..watch_req(key, "", 0) };
    let idle = w.watch(1, notify("idle")).watch_id;
    let busy = w.watch(1, notify("busy")).watch_id;
    w.watch(1, watch_req("quiet", "", 0)); // did not ask
    assert_eq!(w.hub.next_deadline(), Some(w.now + PROGRESS_INTERVAL), "the next tick");
    w.put("busy", "1");
    w.poll_all(1);
    w.advance(PROGRESS_INTERVAL);
    w.sync();
    let got = w.poll_all(1);
    let ids: Vec<WatchId> = got.iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, [idle], "the busy one had events since the last tick");
    assert!(is_progress(&got[0]) && got[0].header.as_ref().unwrap().revision == 2);
    w.advance(PROGRESS_INTERVAL);
    w.sync();
    let ids: Vec<WatchId> = w.poll_all(1).iter().map(|r| r.watch_id).collect();
    assert_eq!(ids, [idle, busy]);
    // Not before the interval.
    w.advance(PROGRESS_INTERVAL / 2);
    w.sync();
    assert!(w.poll_all(1).is_empty());
}

#[test]
fn a_handle_request_dispatches_create_and_cancel() {
    let mut w = World::new();
    let create = |req| WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(req)) };
    w.hub.handle_request(1, &create(watch_req("k", "", 0)));
    w.hub.handle_request(
        1,
        &WatchRequest {
            request_union: Some(watch_request::RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 0 })),
        },
    );
    w.hub.handle_request(1, &WatchRequest::default());
    let got = w.poll_all(1);
    assert!(got[0].created && got[1].canceled && got.len() == 2);
}

// ---- fragments ----------------------------------------------------------------------------

#[test]
fn a_large_revision_is_fragmented_only_for_watchers_that_asked() {
    let mut w = World::new();
    let whole = w.watch(1, watch_req("", "\0", 0)).watch_id;
    let req = WatchCreateRequest { fragment: true, ..watch_req("", "\0", 0) };
    let pieces = w.watch(1, req.clone()).watch_id;
    let big = "v".repeat(MAX_REQUEST_BYTES / 3);
    let ops = (0..5).map(|i| request_op::Request::RequestPut(put_req(&format!("k{i}"), &big))).collect();
    let rev = w.txn(ops);
    let got = w.poll_all(1);
    let whole_got: Vec<&WatchResponse> = got.iter().filter(|r| r.watch_id == whole).collect();
    assert_eq!(whole_got.len(), 1);
    assert_eq!(whole_got[0].events.len(), 5);
    let frags: Vec<&WatchResponse> = got.iter().filter(|r| r.watch_id == pieces).collect();
    assert!(frags.len() > 1);
    let (last, rest) = frags.split_last().unwrap();
    assert!(rest.iter().all(|r| r.fragment) && !last.fragment);
    assert!(frags.iter().all(|r| r.header.as_ref().unwrap().revision == rev));
    assert_eq!(events_of(&got, pieces), w.expected(&req, rev, rev));
}

// ---- deadlines and restore ----------------------------------------------------------------

#[test]
fn next_deadline_says_when_sync_has_work() {
    let mut w = World::new();
    assert_eq!(w.hub.next_deadline(), None, "no watchers: nothing to do");
    w.put("k", "1");
    w.watch(1, watch_req("k", "", 1));
    assert_eq!(w.hub.next_deadline(), Some(Instant::ZERO));
    w.sync();
    assert_eq!(w.hub.next_deadline(), None);
}

#[test]
fn a_restored_store_catches_every_watcher_up() {
    let mut w = World::new();
    let req = watch_req("", "\0", 0);
    let id = w.watch(1, req.clone()).watch_id;
    let future = w.watch(1, watch_req("k", "", 6)).watch_id;
    w.put("a", "1"); // 2, through notify
                     // Revisions 3..=7 arrive in a snapshot, not through notify.
    let mut newer = w.store.clone();
    for i in 0..5 {
        let events = newer.put(&put_req("k", &i.to_string()), &NoLeases).unwrap().events;
        w.log.extend(events);
    }
    w.store = newer;
    w.hub.restored(&w.store);
    w.hub.invariants();
    let got = w.drain(1);
    assert_eq!(events_of(&got, id), w.expected(&req, 2, 7));
    assert_eq!(events_of(&got, future), w.expected(&watch_req("k", "", 6), 6, 7));
}

// ---- randomized: every guarantee on every watcher -----------------------------------------

/// What a client of one watcher saw.
#[derive(Debug)]
struct Seen {
    req: WatchCreateRequest,
    start: i64,
    events: Vec<Event>,
    /// Revision of the last event, and whether its response was a non-final fragment.
    last_rev: i64,
    in_fragment: bool,
    end: End,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Open,
    /// We asked to cancel it (the hub may have dropped it for compaction first).
    CancelAsked,
    Canceled,
    Compacted(i64),
}

#[derive(Default)]
struct ClientStream {
    /// Creates whose replies have not arrived, in request order.
    creating: VecDeque<WatchCreateRequest>,
    watches: BTreeMap<WatchId, Seen>,
    finished: Vec<Seen>,
    last_header: i64,
}

#[derive(Default, Debug)]
struct Coverage {
    fell_behind: usize,
    compacted: usize,
    progress_checked: usize,
    progress_deferred: usize,
    restores: usize,
    events_checked: usize,
}

/// What the writes did, for checking what clients saw.
struct History<'a> {
    log: &'a [Event],
    /// Every revision a compaction was made at.
    compactions: &'a BTreeSet<i64>,
}

impl History<'_> {
    /// `seen` got exactly the matching events from its start up to `upto`, in order, once.
    ///
    /// One allowance: an event at a compaction revision, caught up from the store after that
    /// compaction, has lost a `prev_kv` older than the compaction (the version is gone; etcd
    /// sends none there either). Delivered before the compaction, it has it.
    fn assert_delivered(&self, seen: &Seen, upto: i64, what: &str) {
        let mut want = expected_events(self.log, &seen.req, seen.start, upto);
        if want.len() == seen.events.len() {
            for (w, got) in want.iter_mut().zip(&seen.events) {
                let rev = rev_of(w);
                if got.prev_kv.is_none()
                    && self.compactions.contains(&rev)
                    && w.prev_kv.as_ref().is_some_and(|p| p.mod_revision < rev)
                {
                    w.prev_kv = None;
                }
            }
        }
        assert_eq!(seen.events, want, "{what}");
    }

    fn claim_holds(&self, seen: &Seen, claimed: i64) {
        assert!(claimed >= seen.start - 1, "progress {claimed} below the start {} (etcd #20221)", seen.start);
        assert!(!seen.in_fragment, "progress inside a fragmented revision");
        self.assert_delivered(
            seen,
            claimed,
            &format!("progress {claimed} vouches for events not delivered (etcd #15220)"),
        );
    }
}

impl ClientStream {
    fn receive(&mut self, r: WatchResponse, h: &History, current: i64, cov: &mut Coverage) {
        let header = r.header.as_ref().expect("header").revision;
        assert!(header >= self.last_header, "header revision went back");
        assert!(header <= current);
        self.last_header = header;
        if r.created {
            let req = self.creating.pop_front().expect("a reply to a create");
            if r.canceled {
                assert_eq!(r.watch_id, INVALID_WATCH_ID);
                assert_eq!(r.cancel_reason, CANCEL_REASON_DUPLICATE_ID);
                return;
            }
            let start = if req.start_revision == 0 { header + 1 } else { req.start_revision };
            let seen = Seen { req, start, events: Vec::new(), last_rev: 0, in_fragment: false, end: End::Open };
            assert!(self.watches.insert(r.watch_id, seen).is_none());
            return;
        }
        if is_progress(&r) {
            cov.progress_checked += 1;
            if r.watch_id == INVALID_WATCH_ID {
                for seen in self.watches.values() {
                    h.claim_holds(seen, header);
                }
            } else {
                h.claim_holds(&self.watches[&r.watch_id], header);
            }
            return;
        }
        let seen = self.watches.get_mut(&r.watch_id).expect("a response for a live watcher");
        if r.canceled {
            assert!(r.events.is_empty());
            let mut seen = self.watches.remove(&r.watch_id).unwrap();
            seen.end = if r.compact_revision != 0 {
                cov.compacted += 1;
                End::Compacted(r.compact_revision)
            } else {
                assert_eq!(seen.end, End::CancelAsked, "canceled unasked");
                End::Canceled
            };
            self.finished.push(seen);
            return;
        }
        assert!(!r.events.is_empty());
        let first = rev_of(&r.events[0]);
        if seen.in_fragment {
            assert!(first >= seen.last_rev, "a fragment went back");
        } else {
            assert!(first > seen.last_rev, "revision {first} after {} (ordered, unique, atomic)", seen.last_rev);
        }
        assert!(first >= seen.start, "an event before the start revision");
        assert!(r.events.windows(2).all(|p| rev_of(&p[0]) <= rev_of(&p[1])));
        seen.last_rev = rev_of(r.events.last().unwrap());
        seen.in_fragment = r.fragment;
        seen.events.extend(r.events);
    }

    /// Final checks once everything was delivered, the store at `current`.
    fn check(&self, h: &History, current: i64, cov: &mut Coverage) {
        assert!(self.creating.is_empty());
        for seen in self.watches.values().chain(&self.finished) {
            cov.events_checked += seen.events.len();
            let upto = seen.events.last().map_or(seen.start - 1, rev_of);
            match seen.end {
                End::Open => h.assert_delivered(seen, current, "reliable: every event from the start, once, in order"),
                End::CancelAsked | End::Canceled => {
                    h.assert_delivered(seen, upto, "a gap-free prefix before the cancel")
                }
                End::Compacted(at) => {
                    h.assert_delivered(seen, upto, "a gap-free prefix before the compaction");
                    assert!(upto + 1 < at, "canceled as compacted at {at} though delivered up to {upto}");
                }
            }
        }
    }
}

const KEYS: [&str; 6] = ["a", "ab", "b", "ba", "c", "d"];

fn random_create(rng: &mut StdRng, current: i64, compacted: i64) -> WatchCreateRequest {
    let (key, range_end) = match rng.gen_range(0..5) {
        0 | 1 => (KEYS[rng.gen_range(0..KEYS.len())], ""),
        2 => ("a", "b"),
        3 => ("b", "\0"),
        _ => ("", "\0"),
    };
    let start_revision = match rng.gen_range(0..6) {
        0 | 1 => 0,
        2 => current + 1,
        3 => current + rng.gen_range(2..6),
        _ => rng.gen_range(compacted.max(1) - 1..=current).max(1),
    };
    let mut filters = Vec::new();
    if rng.gen_bool(0.15) {
        filters.push(FilterType::Noput as i32);
    }
    if rng.gen_bool(0.15) {
        filters.push(FilterType::Nodelete as i32);
    }
    WatchCreateRequest {
        key: b(key),
        range_end: b(range_end),
        start_revision,
        progress_notify: rng.gen_bool(0.3),
        filters,
        prev_kv: rng.gen_bool(0.5),
        watch_id: if rng.gen_bool(0.1) { rng.gen_range(1..8) } else { 0 },
        fragment: rng.gen_bool(0.2),
    }
}

fn random_write(w: &mut World, rng: &mut StdRng) -> Vec<Event> {
    let key = KEYS[rng.gen_range(0..KEYS.len())];
    let value = "v".repeat(rng.gen_range(0..20));
    let result = match rng.gen_range(0..10) {
        0..=5 => w.store.put(&put_req(key, &value), &NoLeases).map(|a| a.events),
        6 | 7 => w.store.delete_range(&del_req(key, "")).map(|a| a.events),
        8 => w.store.delete_range(&del_req("a", "c")).map(|a| a.events),
        _ => {
            let mut ops = Vec::new();
            if rng.gen_bool(0.5) {
                ops.push(request_op::Request::RequestDeleteRange(del_req("b", "\0")));
            }
            for k in ["a", "ab", "c"] {
                if rng.gen_bool(0.6) {
                    ops.push(request_op::Request::RequestPut(put_req(k, &value)));
                }
            }
            let txn = TxnRequest {
                success: ops.into_iter().map(|r| RequestOp { request: Some(r) }).collect(),
                ..Default::default()
            };
            w.store.txn(&txn, &NoLeases).map(|a| a.events)
        }
    };
    result.expect("valid writes")
}

fn run_random(seed: u64, ops: usize, cov: &mut Coverage) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut w = World::new();
    // Stream 3 is the slow client: drained rarely.
    let streams: [StreamId; 3] = [1, 2, 3];
    let mut clients: BTreeMap<StreamId, ClientStream> = BTreeMap::new();
    let mut retired: Vec<ClientStream> = Vec::new();

    let deliver = |w: &mut World,
                   clients: &mut BTreeMap<StreamId, ClientStream>,
                   stream: StreamId,
                   max: usize,
                   cov: &mut Coverage| {
        for _ in 0..max {
            let Some(r) = w.hub.poll_response(stream) else {
                break;
            };
            let current = w.store.current_revision();
            let history = History { log: &w.log, compactions: &w.compactions };
            clients.entry(stream).or_default().receive(r, &history, current, cov);
        }
        w.hub.invariants();
    };

    for _ in 0..ops {
        let stream = streams[rng.gen_range(0..streams.len())];
        match rng.gen_range(0..100) {
            0..=39 => {
                let events = random_write(&mut w, &mut rng);
                w.applied(events);
                if w.hub.queued_responses(3) == WATCH_STREAM_RESPONSES_MAX && w.hub.unsynced_count() > 0 {
                    cov.fell_behind += 1;
                }
            }
            40..=47 => {
                if w.hub.accepts_requests(stream) {
                    let mut req = random_create(&mut rng, w.store.current_revision(), w.store.compact_revision());
                    let client = clients.entry(stream).or_default();
                    // A client never reuses an id it still knows: if the hub dropped that
                    // watcher (compaction) unbeknown to the client, a new one with the same
                    // id would take the client's later cancel. An id created but not yet
                    // confirmed may collide: that is the duplicate-id refusal.
                    if client.watches.contains_key(&req.watch_id) {
                        req.watch_id = 0;
                    }
                    client.creating.push_back(req.clone());
                    w.create(stream, req);
                }
            }
            48..=50 => {
                let client = clients.entry(stream).or_default();
                let open: Vec<WatchId> =
                    client.watches.iter().filter(|(_, s)| s.end == End::Open).map(|(id, _)| *id).collect();
                if !open.is_empty() && w.hub.accepts_requests(stream) {
                    let id = open[rng.gen_range(0..open.len())];
                    client.watches.get_mut(&id).unwrap().end = End::CancelAsked;
                    w.hub.cancel(stream, id);
                    w.hub.invariants();
                }
            }
            51..=53 => {
                let (compacted, current) = (w.store.compact_revision(), w.store.current_revision());
                if compacted < current {
                    let at = rng.gen_range(compacted.max(1)..=current);
                    if at > compacted {
                        w.compact(at);
                    }
                }
            }
            54..=68 => w.sync(),
            69..=88 => {
                if stream != 3 || rng.gen_bool(0.1) {
                    let max = rng.gen_range(1..60);
                    deliver(&mut w, &mut clients, stream, max, cov);
                }
            }
            89..=92 => {
                if w.hub.accepts_requests(stream) {
                    let before = w.hub.queued_responses(stream);
                    w.hub.request_progress(stream);
                    if w.hub.queued_responses(stream) == before {
                        cov.progress_deferred += 1;
                    }
                    w.hub.invariants();
                }
            }
            93..=96 => w.advance(Duration::from_millis(rng.gen_range(100..1500))),
            97 => {
                // A snapshot: some revisions arrive without notify.
                let mut newer = w.store.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let saved = std::mem::replace(&mut w.store, newer);
                    let events = random_write(&mut w, &mut rng);
                    newer = std::mem::replace(&mut w.store, saved);
                    w.log.extend(events);
                }
                w.store = newer;
                w.hub.restored(&w.store);
                w.hub.invariants();
                cov.restores += 1;
            }
            _ => {
                // The client goes away. Its checks still run on what it saw.
                w.hub.close_stream(stream);
                w.hub.invariants();
                if let Some(mut client) = clients.remove(&stream) {
                    client.creating.clear();
                    for seen in client.watches.values_mut() {
                        seen.end = End::CancelAsked;
                    }
                    retired.push(client);
                }
            }
        }
    }

    // Quiesce: no more writes; deliver everything.
    for _ in 0..100_000 {
        w.sync_ready();
        let ready: Vec<StreamId> = w.hub.ready_streams().collect();
        if ready.is_empty() {
            break;
        }
        for stream in ready {
            deliver(&mut w, &mut clients, stream, usize::MAX, cov);
        }
    }
    assert_eq!(w.hub.ready_streams().count(), 0);
    assert_eq!(w.hub.unsynced_count(), 0, "every watcher caught up");
    // Every stream ends with a progress request: answered (and checked) at once unless a
    // watcher of the stream starts in the future.
    for stream in streams {
        if w.hub.accepts_requests(stream) {
            w.hub.request_progress(stream);
            deliver(&mut w, &mut clients, stream, usize::MAX, cov);
        }
    }
    let current = w.store.current_revision();
    for client in clients.values().chain(&retired) {
        let history = History { log: &w.log, compactions: &w.compactions };
        client.check(&history, current, cov);
    }
}

#[test]
fn random_interleavings_keep_every_guarantee() {
    let mut cov = Coverage::default();
    for seed in 0..40 {
        run_random(seed, 1500, &mut cov);
    }
    println!("coverage: {cov:?}");
    assert!(cov.fell_behind > 0, "{cov:?}");
    assert!(cov.compacted > 0, "{cov:?}");
    assert!(cov.progress_checked > 0, "{cov:?}");
    assert!(cov.progress_deferred > 0, "{cov:?}");
    assert!(cov.restores > 0, "{cov:?}");
    assert!(cov.events_checked > 10_000, "{cov:?}");
}
