//! The watch hub. See the [module docs](super) for the calling contract.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use detcd_proto::etcdserverpb::{
    watch_create_request::FilterType, watch_request, ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use detcd_proto::mvccpb::{event::EventType, Event};

use super::queue::StreamQueue;
use crate::limits::{
    MAX_REQUEST_BYTES, WATCHERS_PER_SYNC_MAX, WATCH_STREAM_CONTROL_RESPONSES_MAX, WATCH_STREAM_RESPONSES_MAX,
    WATCH_SYNC_RESPONSE_EVENTS_MAX,
};
use crate::mvcc::{KeyRange, Store};
use crate::time::{Duration, Instant};
use crate::Error;

/// One client `Watch` stream, named by the driver.
pub type StreamId = u64;

/// A watcher's id, unique within its stream (chosen by the client, or assigned from 0 up).
pub type WatchId = i64;

/// The watch id of responses that belong to no watcher: a failed create, a progress
/// notification for the whole stream (etcd's `clientv3.InvalidWatchID`).
pub const INVALID_WATCH_ID: WatchId = -1;

/// `WatchCreateRequest.watch_id` 0 asks for an id to be assigned (etcd's `AutoWatchID`).
const AUTO_WATCH_ID: WatchId = 0;

/// Cancel reason of a create with a watch id already used on the stream (etcd's
/// `mvcc.ErrWatcherDuplicateID`, verbatim).
pub const CANCEL_REASON_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

/// Cancel reason of a create whose range holds no key, `key >= range_end` (etcd's
/// `mvcc.ErrEmptyWatcherRange`, verbatim).
pub const CANCEL_REASON_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// Most responses a stream's queue holds: event responses fill it up to
/// `WATCH_STREAM_RESPONSES_MAX`, replies to requests may use the room above.
const STREAM_QUEUE_MAX: usize = WATCH_STREAM_RESPONSES_MAX + WATCH_STREAM_CONTROL_RESPONSES_MAX;

type WatcherRef = (StreamId, WatchId);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Synced,
    Unsynced,
    Future,
}

#[derive(Debug)]
struct Watcher {
    /// etcd's encoding (see [`KeyRange`]): no `range_end` = `key` alone, `"\0"` = from `key`
    /// on. An empty request key has been replaced by `"\0"`, as etcd does. The range end is
    /// boxed: most watchers watch one key, and every byte of a watcher counts 100,000 times
    /// over (its map entry is 24 bytes smaller). The key is an `Arc<[u8]>` (16 bytes, where
    /// `Bytes` takes 32), shared with the other watchers of the key.
    key: Arc<[u8]>,
    range_end: Option<Box<Bytes>>,
    /// The first revision whose events the watcher wants (a request's 0 resolved to
    /// `current + 1` at creation).
    start_revision: i64,
    group: Group,
    /// Unsynced: every matching event below it is queued; the next one to catch up from is
    /// at or above it. Future: the start revision. Synced: stale — `current + 1` is implied.
    next_revision: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// No events queued for it since the last progress tick (etcd's `progress[id]`): only an
    /// idle watcher gets a periodic progress notification.
    idle: bool,
}

impl Watcher {
    fn range(&self) -> KeyRange<'_> {
        KeyRange::new(&self.key, self.range_end())
    }

    /// Empty for a single key.
    fn range_end(&self) -> &[u8] {
        self.range_end.as_deref().map_or(&[], |end| &end[..])
    }

    fn is_single_key(&self) -> bool {
        self.range_end.is_none()
    }

    /// Whether a filter of the watcher drops the event.
    fn filters_out(&self, event: &Event) -> bool {
        let is_put = event.r#type == EventType::Put as i32;
        (is_put && self.no_put) || (!is_put && self.no_delete)
    }

    /// The event as this watcher receives it, or `None` if a filter drops it. `prev_kv` is
    /// copied only if the watcher asked for it: each copy costs reference-count updates on
    /// the shared key and value, once per watcher per event.
    fn view(&self, event: &Event) -> Option<Event> {
        if self.filters_out(event) {
            return None;
        }
        let prev_kv = if self.prev_kv { event.prev_kv.clone() } else { None };
        Some(Event { r#type: event.r#type, kv: event.kv.clone(), prev_kv })
    }

    /// [`view`](Self::view) of an event the caller owns (no copy).
    fn view_owned(&self, mut event: Event) -> Option<Event> {
        if self.filters_out(&event) {
            return None;
        }
        if !self.prev_kv {
            event.prev_kv = None;
        }
        Some(event)
    }
}

#[derive(Debug)]
struct Stream {
    queue: StreamQueue,
    watch_ids: BTreeSet<WatchId>,
    /// The id the next auto-assigned watcher tries first; never goes back, so a canceled id is
    /// not handed out again (etcd's `nextID`).
    next_auto_id: WatchId,
    /// The stream's watchers in the unsynced group.
    unsynced: BTreeSet<WatchId>,
    /// How many of the stream's watchers are in the future group.
    future: usize,
    /// A `WatchProgressRequest` waits for every watcher of the stream to be synced.
    progress_requested: bool,
    /// The unsynced watcher caught up last, so that `sync` goes round the stream's watchers.
    sync_cursor: Option<WatchId>,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            queue: StreamQueue::default(),
            watch_ids: BTreeSet::new(),
            next_auto_id: 0,
            unsynced: BTreeSet::new(),
            future: 0,
            progress_requested: false,
            sync_cursor: None,
        }
    }

    /// Every watcher of the stream has been sent all its events up to the current revision,
    /// and none starts beyond the next one: a progress notification at the current revision
    /// is true for all of them.
    fn all_synced(&self) -> bool {
        self.unsynced.is_empty() && self.future == 0
    }

    /// Room for an event response (events, catch-up, compaction cancel, periodic progress).
    fn has_event_room(&self) -> bool {
        self.queue.len() < WATCH_STREAM_RESPONSES_MAX
    }

    /// Room for a reply to a request of the client.
    fn has_control_room(&self) -> bool {
        self.queue.len() < STREAM_QUEUE_MAX
    }
}

/// All watchers of a member. See the [module docs](super).
#[derive(Debug)]
pub struct WatchHub {
    progress_interval: Duration,
    /// When the next periodic progress tick is due.
    progress_due: Instant,
    /// The store's revision, as told by `notify` (checked against the store in `sync`).
    current_revision: i64,
    streams: BTreeMap<StreamId, Stream>,
    watchers: BTreeMap<WatcherRef, Watcher>,
    /// Synced single-key watchers by key: a write finds them with one lookup per event.
    synced_keys: BTreeMap<Arc<[u8]>, BTreeSet<WatcherRef>>,
    /// Synced range watchers: checked against every event of a write. (etcd keeps them in an
    /// interval tree; a scan is simpler and fine while range watchers are few.)
    synced_ranges: BTreeSet<WatcherRef>,
    /// Future watchers by start revision.
    future: BTreeSet<(i64, WatcherRef)>,
    /// Streams with at least one unsynced watcher.
    streams_unsynced: BTreeSet<StreamId>,
    /// Streams with a progress request waiting.
    progress_pending: BTreeSet<StreamId>,
    /// Streams with responses queued.
    ready: BTreeSet<StreamId>,
    /// Watchers created with `progress_notify`.
    progress_watchers: BTreeSet<WatcherRef>,
    /// The stream `sync` caught up last, so that it goes round the streams.
    sync_cursor: Option<StreamId>,
}

/// A create request answered without a watcher: created and canceled at once, with `reason`.
fn refusal(current: i64, reason: &str) -> WatchResponse {
    WatchResponse {
        header: header(current),
        watch_id: INVALID_WATCH_ID,
        created: true,
        canceled: true,
        cancel_reason: reason.to_owned(),
        ..Default::default()
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

fn event_main(event: &Event) -> i64 {
    event.kv.as_ref().expect("events carry a kv").mod_revision
}

impl WatchHub {
    /// A hub with no watchers, for `store` at its current revision. Watchers that asked for
    /// progress notifications get one every `progress_interval` when idle (etcd's default:
    /// [`WATCH_PROGRESS_INTERVAL_MS_DEFAULT`](crate::limits::WATCH_PROGRESS_INTERVAL_MS_DEFAULT)).
    pub fn new(now: Instant, progress_interval: Duration, store: &Store) -> WatchHub {
        assert!(!progress_interval.is_zero(), "a zero progress interval would spin");
        WatchHub {
            progress_interval,
            progress_due: now + progress_interval,
            current_revision: store.current_revision(),
            streams: BTreeMap::new(),
            watchers: BTreeMap::new(),
            synced_keys: BTreeMap::new(),
            synced_ranges: BTreeSet::new(),
            future: BTreeSet::new(),
            streams_unsynced: BTreeSet::new(),
            progress_pending: BTreeSet::new(),
            ready: BTreeSet::new(),
            progress_watchers: BTreeSet::new(),
            sync_cursor: None,
        }
    }

    /// The store revision the hub has been notified up to.
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// Watchers on all streams.
    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Watchers that lag behind the store (unsynced).
    pub fn unsynced_count(&self) -> usize {
        self.streams.values().map(|s| s.unsynced.len()).sum()
    }

    /// Responses queued on `stream` (a response being sent in fragments counts once).
    pub fn queued_responses(&self, stream: StreamId) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.queue.len())
    }

    // ---- requests -------------------------------------------------------------------------

    /// Whether the driver may hand the hub another request of `stream`: there is room for its
    /// reply. While false, the driver leaves the stream's requests unread.
    pub fn accepts_requests(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_none_or(Stream::has_control_room)
    }

    /// One `WatchRequest` of `stream`. A request without a body is ignored, as etcd does.
    pub fn handle_request(&mut self, stream: StreamId, request: &WatchRequest) {
        match &request.request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => self.create(stream, create),
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => self.cancel(stream, cancel.watch_id),
            Some(watch_request::RequestUnion::ProgressRequest(_)) => self.request_progress(stream),
            None => {}
        }
    }

    /// etcd's watch create. The reply goes out at once: `{created, watch_id, header.revision =
    /// current}`, or for a refused create `{created, canceled, watch_id: -1, cancel_reason}`:
    ///
    /// - `start_revision < 0`: etcd's compacted error message;
    /// - `key >= range_end` (a non-empty, non-`"\0"` end): [`CANCEL_REASON_EMPTY_RANGE`];
    /// - a client-chosen `watch_id` (non-zero) already used on the stream:
    ///   [`CANCEL_REASON_DUPLICATE_ID`].
    ///
    /// An empty `key` means `"\0"`; `range_end = "\0"` means every key from `key`; watch id 0
    /// assigns the stream's next free id (from 0 up, skipping ids in use). `start_revision` 0
    /// means the next revision. A start revision at or below the current one is caught up
    /// from the store by `sync`; if it is below the compaction, `sync` then sends
    /// `{compact_revision, canceled}` and drops the watcher.
    /// Answers a create request without creating anything: created and canceled at once, with
    /// `reason` (a watch the stream's user may not read).
    pub fn refuse_create(&mut self, stream: StreamId, reason: &str) {
        let current = self.current_revision;
        let st = self.streams.entry(stream).or_insert_with(Stream::new);
        assert!(st.has_control_room(), "stream {stream}: a request while accepts_requests is false");
        st.queue.push(refusal(current, reason), false);
    }

    pub fn create(&mut self, stream: StreamId, req: &WatchCreateRequest) {
        let current = self.current_revision;
        let st = self.streams.entry(stream).or_insert_with(Stream::new);
        assert!(st.has_control_room(), "stream {stream}: a request while accepts_requests is false");
        let refuse = |st: &mut Stream, reason: &str| st.queue.push(refusal(current, reason), false);
        // Copied out of the request, so that a long-lived watcher never pins a request buffer;
        // shared with the synced watchers of the same key when there are some (many watchers
        // of one key are the common case: one copy, not one allocation per watcher).
        let key: Arc<[u8]> = if req.key.is_empty() {
            Arc::from(&b"\0"[..])
        } else if let Some((shared, _)) = self.synced_keys.get_key_value(&req.key[..]) {
            shared.clone()
        } else {
            Arc::from(&req.key[..])
        };
        let range_end = Bytes::copy_from_slice(&req.range_end);
        if req.start_revision < 0 {
            refuse(st, Error::Compacted.message());
        } else if !range_end.is_empty() && range_end[..] != [0] && key[..] >= range_end[..] {
            refuse(st, CANCEL_REASON_EMPTY_RANGE);
        } else if req.watch_id != AUTO_WATCH_ID && st.watch_ids.contains(&req.watch_id) {
            refuse(st, CANCEL_REASON_DUPLICATE_ID);
        } else {
            let id = if req.watch_id == AUTO_WATCH_ID {
                while st.watch_ids.contains(&st.next_auto_id) {
                    st.next_auto_id += 1;
                }
                st.next_auto_id += 1;
                st.next_auto_id - 1
            } else {
                req.watch_id
            };
            st.watch_ids.insert(id);
            st.queue.push(
                WatchResponse { header: header(current), watch_id: id, created: true, ..Default::default() },
                false,
            );
            let start_revision = if req.start_revision == 0 { current + 1 } else { req.start_revision };
            let filter = |f: FilterType| req.filters.contains(&(f as i32));
            let watcher = Watcher {
                key,
                range_end: if range_end.is_empty() { None } else { Some(Box::new(range_end)) },
                start_revision,
                // Placed by `enter` below.
                group: Group::Synced,
                next_revision: start_revision,
                no_put: filter(FilterType::Noput),
                no_delete: filter(FilterType::Nodelete),
                prev_kv: req.prev_kv,
                fragment: req.fragment,
                progress_notify: req.progress_notify,
                idle: true,
            };
            let r = (stream, id);
            if watcher.progress_notify {
                self.progress_watchers.insert(r);
            }
            let prior = self.watchers.insert(r, watcher);
            assert!(prior.is_none(), "watch id {id} reused on stream {stream}");
            let group = match start_revision.cmp(&(current + 1)) {
                std::cmp::Ordering::Less => Group::Unsynced,
                std::cmp::Ordering::Equal => Group::Synced,
                std::cmp::Ordering::Greater => Group::Future,
            };
            self.enter(r, group, start_revision);
        }
        self.mark_ready(stream);
    }

    /// etcd's watch cancel: drops the watcher and replies `{watch_id, canceled}`. Responses
    /// already queued for it still go out (before the reply). An unknown id gets no reply, as
    /// in etcd.
    pub fn cancel(&mut self, stream: StreamId, watch_id: WatchId) {
        assert!(self.accepts_requests(stream), "stream {stream}: a request while accepts_requests is false");
        if !self.watchers.contains_key(&(stream, watch_id)) {
            return;
        }
        self.remove_watcher((stream, watch_id));
        let st = self.streams.get_mut(&stream).expect("a watcher's stream exists");
        st.queue.push(
            WatchResponse { header: header(self.current_revision), watch_id, canceled: true, ..Default::default() },
            false,
        );
        self.mark_ready(stream);
        self.flush_progress_request(stream);
    }

    /// etcd's `WatchProgressRequest`: a response `{watch_id: -1, header.revision = current}`
    /// telling the client that every event up to that revision of every watcher on the
    /// stream has been sent. It goes out now if every watcher of the stream is synced;
    /// otherwise it waits until they all are, so that it never overtakes their events (etcd
    /// #15220). Requests made while one waits are answered by that one response.
    pub fn request_progress(&mut self, stream: StreamId) {
        let st = self.streams.entry(stream).or_insert_with(Stream::new);
        assert!(st.has_control_room(), "stream {stream}: a request while accepts_requests is false");
        st.progress_requested = true;
        self.progress_pending.insert(stream);
        self.flush_progress_request(stream);
    }

    /// The client's stream ended: its watchers and queued responses go.
    pub fn close_stream(&mut self, stream: StreamId) {
        let Some(st) = self.streams.get(&stream) else {
            return;
        };
        let ids: Vec<WatchId> = st.watch_ids.iter().copied().collect();
        for id in ids {
            self.remove_watcher((stream, id));
        }
        self.streams.remove(&stream);
        self.ready.remove(&stream);
        self.progress_pending.remove(&stream);
        self.streams_unsynced.remove(&stream);
    }

    // ---- writes ---------------------------------------------------------------------------

    /// The events of the write that created `revision` (all of it, in `(main, sub)` order, as
    /// in [`Applied::events`](crate::mvcc::Applied)). Each synced watcher with matching events
    /// gets them, filtered, in one response with `header.revision = revision`. A watcher whose
    /// stream has no room moves to the unsynced group with `revision` as its next revision,
    /// and catches up from the store later: nothing is lost, and the write is not held up.
    pub fn notify(&mut self, events: &[Event], revision: i64) {
        assert!(!events.is_empty(), "a revision has at least one event");
        assert_eq!(revision, self.current_revision + 1, "notify every revision, in order");
        assert!(events.iter().all(|e| event_main(e) == revision), "events of revision {revision} only");
        self.current_revision = revision;

        if let [event] = events {
            // One event (a put, a delete of one key: the common write): each matching watcher
            // gets it as it is, without gathering per watcher first.
            let key = &event.kv.as_ref().expect("events carry a kv").key;
            let single = self.synced_keys.get(&key[..]).into_iter().flatten();
            let ranges = self.synced_ranges.iter().filter(|r| self.watchers[r].range().contains(key));
            let targets: Vec<WatcherRef> = single.chain(ranges).copied().collect();
            for r in targets {
                let Some(view) = self.watchers[&r].view(event) else { continue };
                self.deliver(r, revision, std::iter::once(view));
            }
        } else {
            let mut batches: BTreeMap<WatcherRef, Vec<Event>> = BTreeMap::new();
            for event in events {
                let key = &event.kv.as_ref().expect("events carry a kv").key;
                let single = self.synced_keys.get(&key[..]).into_iter().flatten();
                let ranges = self.synced_ranges.iter().filter(|r| self.watchers[r].range().contains(key));
                for r in single.chain(ranges) {
                    if let Some(view) = self.watchers[r].view(event) {
                        batches.entry(*r).or_default().push(view);
                    }
                }
            }
            for (r, events) in batches {
                self.deliver(r, revision, events.into_iter());
            }
        }
        // Future watchers starting at the next revision are now simply synced. (None starts at
        // this one: it was promoted when the store reached the revision before.)
        self.promote_future();
    }

    /// A synced watcher's events of `revision`: into its response still waiting (see
    /// `StreamQueue`), else into a new one if its stream has room, else nowhere — the watcher
    /// falls back to the store, from this very revision.
    fn deliver<I: ExactSizeIterator<Item = Event>>(&mut self, r: WatcherRef, revision: i64, events: I) {
        let st = self.streams.get_mut(&r.0).expect("a watcher's stream exists");
        let w = self.watchers.get_mut(&r).expect("delivered watchers exist");
        let events = match st.queue.coalesce(r.1, revision, revision, events) {
            Ok(()) => {
                w.idle = false;
                return;
            }
            Err(events) => events,
        };
        if st.has_event_room() {
            w.idle = false;
            st.queue.push_events(r.1, revision, events.collect(), w.fragment);
            self.ready.insert(r.0);
        } else {
            self.leave(r);
            self.enter(r, Group::Unsynced, revision);
        }
    }

    /// The store was replaced wholesale (a raft snapshot installed) and is now at a revision
    /// at or beyond the hub's. The revisions in between never went through `notify`, so every
    /// synced watcher now lags and catches up from the new store (etcd's `Restore`); if the
    /// snapshot's compaction is beyond a watcher's next revision, `sync` cancels it as
    /// compacted.
    pub fn restored(&mut self, store: &Store) {
        let old = self.current_revision;
        let new = store.current_revision();
        assert!(new >= old, "a restored store never goes back ({old} -> {new})");
        if new == old {
            return;
        }
        self.current_revision = new;
        let synced: Vec<WatcherRef> =
            self.synced_keys.values().flatten().chain(self.synced_ranges.iter()).copied().collect();
        #[cfg(feature = "canary")]
        let synced = if crate::canary::on(crate::canary::Canary::WatchRestoreSilent) { Vec::new() } else { synced };
        for r in synced {
            self.leave(r);
            self.enter(r, Group::Unsynced, old + 1);
        }
        let due: Vec<(i64, WatcherRef)> = self.future.iter().take_while(|(start, _)| *start <= new).copied().collect();
        for (start, r) in due {
            self.leave(r);
            self.enter(r, Group::Unsynced, start);
        }
        self.promote_future();
    }

    // ---- time and catch-up ----------------------------------------------------------------

    /// When `sync` should run next: at once (an instant at or before any `now`) if a lagging
    /// watcher's stream has room to catch up into; else when the next periodic progress
    /// notification is due, if a watcher asked for them; else never (`None`).
    pub fn next_deadline(&self) -> Option<Instant> {
        let can_catch_up = self.streams_unsynced.iter().any(|s| self.streams[s].has_event_room());
        if can_catch_up {
            Some(Instant::ZERO)
        } else if !self.progress_watchers.is_empty() {
            Some(self.progress_due)
        } else {
            None
        }
    }

    /// Catches up unsynced watchers from `store` and sends due progress notifications.
    ///
    /// Catch-up goes round the streams with lagging watchers and, in each, round its lagging
    /// watchers, while the stream has room: each watcher visited gets one response of at most
    /// [`WATCH_SYNC_RESPONSE_EVENTS_MAX`] events (whole revisions) from its next revision, and
    /// joins the synced group once it reaches the current revision. At most
    /// [`WATCHERS_PER_SYNC_MAX`] watchers are visited per call; `next_deadline` says whether
    /// more work is ready. A watcher whose next revision has been compacted away gets
    /// `{compact_revision, canceled}` (etcd's exact response, `cancel_reason` empty) and is
    /// dropped.
    ///
    /// Every `progress_interval`, each watcher created with `progress_notify` that is synced
    /// and had no events queued since the previous tick gets `{watch_id, header.revision =
    /// current}` (if its stream has room; else it is skipped, as etcd's non-blocking send).
    pub fn sync(&mut self, now: Instant, store: &Store) {
        assert_eq!(
            store.current_revision(),
            self.current_revision,
            "the store has revisions the hub was not notified of"
        );
        self.catch_up(store);
        if now >= self.progress_due {
            self.progress_tick();
            // From now, not from the due time: a clock that jumped must not cause a burst.
            self.progress_due = now + self.progress_interval;
        }
        let pending: Vec<StreamId> = self.progress_pending.iter().copied().collect();
        for stream in pending {
            self.flush_progress_request(stream);
        }
    }

    fn catch_up(&mut self, store: &Store) {
        let mut budget = WATCHERS_PER_SYNC_MAX;
        let streams: Vec<StreamId> = round_robin(&self.streams_unsynced, self.sync_cursor);
        for stream in streams {
            if budget == 0 {
                break;
            }
            self.sync_cursor = Some(stream);
            let st = &self.streams[&stream];
            let ids = round_robin(&st.unsynced, st.sync_cursor);
            for id in ids {
                let st = self.streams.get_mut(&stream).expect("stream exists");
                if budget == 0 || !st.has_event_room() {
                    break;
                }
                budget -= 1;
                st.sync_cursor = Some(id);
                self.catch_up_watcher((stream, id), store);
            }
            self.flush_progress_request(stream);
        }
    }

    /// One catch-up step of an unsynced watcher whose stream has room.
    fn catch_up_watcher(&mut self, r: WatcherRef, store: &Store) {
        let current = self.current_revision;
        let w = &self.watchers[&r];
        debug_assert_eq!(w.group, Group::Unsynced);
        let after = w.next_revision - 1;
        #[cfg(feature = "canary")]
        let after = if crate::canary::on(crate::canary::Canary::WatchDropCompacted) {
            after.max(store.compact_revision())
        } else {
            after
        };
        let result = store.events_in(&w.key, w.range_end(), after, current, WATCH_SYNC_RESPONSE_EVENTS_MAX);
        let st = self.streams.get_mut(&r.0).expect("a watcher's stream exists");
        match result {
            Err(Error::Compacted) => {
                st.queue.push(
                    WatchResponse {
                        header: header(current),
                        watch_id: r.1,
                        canceled: true,
                        compact_revision: store.compact_revision(),
                        ..Default::default()
                    },
                    false,
                );
                self.mark_ready(r.0);
                self.remove_watcher(r);
            }
            Err(e) => unreachable!("catch-up within the store's revisions failed: {e:?}"),
            Ok(events) => {
                // A short answer covers the whole window; a full one ends with a whole
                // revision, after which the next step continues.
                let covered = if events.len() < WATCH_SYNC_RESPONSE_EVENTS_MAX {
                    current
                } else {
                    event_main(events.last().expect("a full answer has events"))
                };
                assert!(covered > after && covered <= current);
                let w = self.watchers.get_mut(&r).expect("watcher exists");
                let events: Vec<Event> = events.into_iter().filter_map(|e| w.view_owned(e)).collect();
                // The canary: a catch-up that reached the present sends its last revision again.
                #[cfg(feature = "canary")]
                let resend_from = events
                    .last()
                    .map(event_main)
                    .filter(|&last| crate::canary::on(crate::canary::Canary::WatchResend) && after + 1 < last);
                if !events.is_empty() {
                    w.idle = false;
                    let first = event_main(&events[0]);
                    if let Err(events) = st.queue.coalesce(r.1, current, first, events.into_iter()) {
                        st.queue.push_events(r.1, current, events.collect(), w.fragment);
                    }
                    self.mark_ready(r.0);
                }
                self.leave(r);
                #[cfg(feature = "canary")]
                if let (true, Some(last)) = (covered == current, resend_from) {
                    self.enter(r, Group::Unsynced, last);
                    return;
                }
                if covered == current {
                    self.enter(r, Group::Synced, current + 1);
                } else {
                    self.enter(r, Group::Unsynced, covered + 1);
                }
            }
        }
    }

    fn progress_tick(&mut self) {
        let current = self.current_revision;
        for r in &self.progress_watchers {
            let w = self.watchers.get_mut(r).expect("progress watchers exist");
            let st = self.streams.get_mut(&r.0).expect("a watcher's stream exists");
            if w.idle && w.group == Group::Synced && st.has_event_room() {
                st.queue.push(WatchResponse { header: header(current), watch_id: r.1, ..Default::default() }, false);
                self.ready.insert(r.0);
            }
            w.idle = true;
        }
    }

    // ---- responses ------------------------------------------------------------------------

    /// Streams with responses queued, in ascending order.
    pub fn ready_streams(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.ready.iter().copied()
    }

    /// The next response of `stream` (or the next fragment of it), if any. Call it when the
    /// stream's client can take a response; see the [module docs](super).
    pub fn poll_response(&mut self, stream: StreamId) -> Option<WatchResponse> {
        let st = self.streams.get_mut(&stream)?;
        let response = st.queue.pop(MAX_REQUEST_BYTES)?;
        if st.queue.is_empty() {
            self.ready.remove(&stream);
        }
        // Room was made: a waiting progress request may go now.
        self.flush_progress_request(stream);
        Some(response)
    }

    // ---- group bookkeeping ----------------------------------------------------------------

    /// Puts a watcher that is in no group into `group`, with its next revision.
    fn enter(&mut self, r: WatcherRef, group: Group, next_revision: i64) {
        let current = self.current_revision;
        let w = self.watchers.get_mut(&r).expect("watcher exists");
        w.group = group;
        w.next_revision = next_revision;
        match group {
            Group::Synced => {
                assert_eq!(next_revision, current + 1, "synced means next = current + 1");
                if w.is_single_key() {
                    let added = self.synced_keys.entry(w.key.clone()).or_default().insert(r);
                    assert!(added);
                } else {
                    assert!(self.synced_ranges.insert(r));
                }
            }
            Group::Unsynced => {
                assert!(
                    next_revision >= 1 && next_revision <= current,
                    "unsynced means 1 <= next ({next_revision}) <= current ({current})"
                );
                let st = self.streams.get_mut(&r.0).expect("a watcher's stream exists");
                assert!(st.unsynced.insert(r.1));
                self.streams_unsynced.insert(r.0);
            }
            Group::Future => {
                assert!(next_revision > current + 1, "future means next > current + 1");
                assert!(self.future.insert((next_revision, r)));
                self.streams.get_mut(&r.0).expect("stream exists").future += 1;
            }
        }
    }

    /// Takes a watcher out of its group (it must be re-entered or removed).
    fn leave(&mut self, r: WatcherRef) {
        let w = &self.watchers[&r];
        match w.group {
            Group::Synced => {
                if w.is_single_key() {
                    let set = self.synced_keys.get_mut(&w.key).expect("indexed key");
                    assert!(set.remove(&r));
                    if set.is_empty() {
                        self.synced_keys.remove(&w.key);
                    }
                } else {
                    assert!(self.synced_ranges.remove(&r));
                }
            }
            Group::Unsynced => {
                let st = self.streams.get_mut(&r.0).expect("a watcher's stream exists");
                assert!(st.unsynced.remove(&r.1));
                if st.unsynced.is_empty() {
                    self.streams_unsynced.remove(&r.0);
                }
            }
            Group::Future => {
                assert!(self.future.remove(&(w.next_revision, r)));
                self.streams.get_mut(&r.0).expect("stream exists").future -= 1;
            }
        }
    }

    fn remove_watcher(&mut self, r: WatcherRef) {
        self.leave(r);
        self.watchers.remove(&r);
        self.progress_watchers.remove(&r);
        let st = self.streams.get_mut(&r.0).expect("a watcher's stream exists");
        assert!(st.watch_ids.remove(&r.1));
    }

    /// Future watchers that start right after the current revision join the synced group:
    /// they have missed nothing, and get the next revision from `notify`.
    fn promote_future(&mut self) {
        while let Some(&(start, r)) = self.future.first() {
            if start > self.current_revision + 1 {
                break;
            }
            self.leave(r);
            self.enter(r, Group::Synced, start);
            self.flush_progress_request(r.0);
        }
    }

    fn mark_ready(&mut self, stream: StreamId) {
        if !self.streams[&stream].queue.is_empty() {
            self.ready.insert(stream);
        }
    }

    /// Sends a waiting progress request's response if every watcher of the stream is synced
    /// and there is room.
    fn flush_progress_request(&mut self, stream: StreamId) {
        let current = self.current_revision;
        let Some(st) = self.streams.get_mut(&stream) else {
            return;
        };
        if st.progress_requested && st.all_synced() && st.has_control_room() {
            st.queue.push(
                WatchResponse { header: header(current), watch_id: INVALID_WATCH_ID, ..Default::default() },
                false,
            );
            st.progress_requested = false;
            self.progress_pending.remove(&stream);
            self.ready.insert(stream);
        }
    }

    // ---- invariants -----------------------------------------------------------------------

    /// Checks every structural invariant; panics on a violation. For tests (it walks all
    /// watchers and queued responses).
    pub fn invariants(&self) {
        let current = self.current_revision;
        let mut grouped = 0;
        for (r, w) in &self.watchers {
            let st = self.streams.get(&r.0).expect("a watcher's stream exists");
            assert!(st.watch_ids.contains(&r.1), "{r:?} not listed by its stream");
            let in_synced = if w.is_single_key() {
                self.synced_keys.get(&w.key).is_some_and(|s| s.contains(r))
            } else {
                self.synced_ranges.contains(r)
            };
            let in_unsynced = st.unsynced.contains(&r.1);
            let in_future = self.future.contains(&(w.next_revision, *r));
            assert_eq!(
                [in_synced, in_unsynced, in_future],
                [w.group == Group::Synced, w.group == Group::Unsynced, w.group == Group::Future],
                "{r:?} must be in exactly its group {:?}",
                w.group
            );
            grouped += 1;
            match w.group {
                // Its next revision is `current + 1` by construction: `next_revision` was
                // set on entry and is not kept up to date (see `Watcher::next_revision`).
                Group::Synced => assert!(w.next_revision <= current + 1),
                Group::Unsynced => assert!(w.next_revision >= 1 && w.next_revision <= current),
                Group::Future => {
                    assert!(w.next_revision > current + 1);
                    assert_eq!(w.next_revision, w.start_revision);
                }
            }
            assert!(w.next_revision >= w.start_revision, "{r:?} went before its start");
            assert_eq!(self.progress_watchers.contains(r), w.progress_notify, "{r:?}");
        }
        let synced_total: usize =
            self.synced_keys.values().map(BTreeSet::len).sum::<usize>() + self.synced_ranges.len();
        let unsynced_total: usize = self.streams.values().map(|s| s.unsynced.len()).sum();
        assert_eq!(
            synced_total + unsynced_total + self.future.len(),
            grouped,
            "a group holds a watcher that does not exist"
        );
        assert!(self.synced_keys.values().all(|s| !s.is_empty()));
        for (id, st) in &self.streams {
            assert!(st.queue.len() <= STREAM_QUEUE_MAX, "stream {id} over its bound");
            assert_eq!(self.ready.contains(id), !st.queue.is_empty(), "stream {id}");
            assert_eq!(self.streams_unsynced.contains(id), !st.unsynced.is_empty(), "stream {id}");
            assert_eq!(self.progress_pending.contains(id), st.progress_requested, "stream {id}");
            assert!(
                !st.progress_requested || !st.all_synced() || !st.has_control_room(),
                "stream {id}: a progress request waits for nothing"
            );
            let future = self.future.iter().filter(|(_, r)| r.0 == *id).count();
            assert_eq!(st.future, future, "stream {id}");
            for wid in &st.watch_ids {
                assert!(self.watchers.contains_key(&(*id, *wid)));
            }
            for response in st.queue.iter() {
                let revision = response.header.as_ref().map_or(0, |h| h.revision);
                assert!(revision <= current, "stream {id}: a response from the future");
            }
        }
        assert!(self.ready.iter().all(|s| self.streams.contains_key(s)));
        assert!(self.progress_pending.iter().all(|s| self.streams.contains_key(s)));
        assert!(self.streams_unsynced.iter().all(|s| self.streams.contains_key(s)));
    }
}

/// The elements of `set` after `cursor`, then those up to it: a round that starts where the
/// previous one stopped.
fn round_robin<T: Ord + Copy>(set: &BTreeSet<T>, cursor: Option<T>) -> Vec<T> {
    match cursor {
        None => set.iter().copied().collect(),
        Some(c) => set.range((Bound::Excluded(c), Bound::Unbounded)).chain(set.range(..=c)).copied().collect(),
    }
}
