//! One stream's outbound responses, the coalescing of a watcher's events into its response
//! not yet sent, and the splitting of large responses into fragments.

use std::collections::{BTreeMap, VecDeque};

use detcd_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use detcd_proto::mvccpb::Event;
use prost::Message;

use super::hub::WatchId;
use crate::limits::WATCH_SYNC_RESPONSE_EVENTS_MAX;

/// Field number of `WatchResponse.events` (rpc.proto), for the size arithmetic of fragments.
const EVENTS_FIELD_NUMBER: u32 = 11;

/// A response waiting to be sent. A response of a watcher that asked for fragments stays one
/// entry until its last fragment is out: the queue bound counts responses, not fragments.
#[derive(Debug)]
struct Entry {
    response: WatchResponse,
    /// The watcher asked for fragments (`WatchCreateRequest.fragment`).
    fragment: bool,
    /// At least one fragment of `response` was sent already; `response.events` is the rest.
    split: bool,
}

/// A FIFO of one stream's responses. The order of the queue is the order on the wire: a
/// watcher's created response precedes its events, its events precede its canceled response,
/// and a progress notification follows every event it vouches for.
///
/// **Coalescing.** A watcher's events response still waiting in the queue takes the watcher's
/// later events ([`coalesce`](StreamQueue::coalesce)) instead of a new response being queued:
/// a client that reads slower than the writes come gets fewer, larger responses — what etcd
/// sends a watcher that catches up (many revisions in one response) — and the per-response
/// cost (allocation, header, gRPC frame, client wake-up) is paid once for many revisions. It
/// keeps every guarantee of the stream:
///
/// - the watcher's events stay in revision order and whole revisions are appended, so a
///   revision is never split (unless fragments were asked for, as etcd splits them);
/// - only an events response that no other kind of response follows is "open" for
///   coalescing: every other response (created, canceled, progress) closes all open ones,
///   so that no event moves ahead of a reply, a cancel or a progress notification queued
///   before it (a progress notification still vouches only for events already ahead of it:
///   etcd #15220);
/// - a response stays open while it holds at most
///   [`WATCH_SYNC_RESPONSE_EVENTS_MAX`] events (the bound of a catch-up response), so the
///   queue's memory bound is the one catch-up responses already had;
/// - a response whose first fragment is out takes nothing more.
///
/// An open response that grew has a header revision newer than the responses behind it (of
/// other watchers, all events responses). Header revisions on a stream never go back: [`pop`]
/// raises a response's header revision to the highest one sent before it. For an events
/// response that only says the member was at least there, which it was; the events still
/// say what was delivered (clients resume from the last event, not from the header).
///
/// [`pop`]: StreamQueue::pop
#[derive(Debug, Default)]
pub(super) struct StreamQueue {
    entries: VecDeque<Entry>,
    /// Responses pushed over the queue's life: the entry at `entries[i]` has sequence number
    /// `pushed - entries.len() + i`.
    pushed: u64,
    /// The open events response of each watcher that has one, by sequence number. Entries are
    /// removed when popped or closed, so it holds at most one per queued response.
    open: BTreeMap<WatchId, u64>,
    /// The highest header revision sent so far.
    last_header_revision: i64,
}

impl StreamQueue {
    /// Responses queued (a response being sent in fragments counts once).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues a response that is not a watcher's events (a reply, a cancel, a progress
    /// notification). Nothing queued before it may take events any more.
    pub(super) fn push(&mut self, response: WatchResponse, fragment: bool) {
        debug_assert!(response.events.is_empty(), "events go through push_events");
        self.open.clear();
        self.push_entry(response, fragment);
    }

    /// Queues a new events response of `watch_id`, open for coalescing.
    pub(super) fn push_events(&mut self, watch_id: WatchId, header_revision: i64, events: Vec<Event>, fragment: bool) {
        assert!(!events.is_empty(), "an events response has events");
        let response = WatchResponse {
            header: Some(ResponseHeader { revision: header_revision, ..Default::default() }),
            watch_id,
            events,
            ..Default::default()
        };
        self.push_entry(response, fragment);
        self.open.insert(watch_id, self.pushed - 1);
    }

    /// Appends `events` — whole revisions, the first of them `first_revision` — to the
    /// watcher's open events response, and raises its header revision to `header_revision`.
    /// Gives the events back when the watcher has no open response, when it would grow beyond
    /// [`WATCH_SYNC_RESPONSE_EVENTS_MAX`], or when `first_revision` does not follow the
    /// revisions it holds (the caller then queues a new response, room permitting: appending
    /// would hide a repeated revision inside one response). Takes an iterator so that a
    /// write's single event needs no `Vec` of its own on the way.
    pub(super) fn coalesce<I: ExactSizeIterator<Item = Event>>(
        &mut self,
        watch_id: WatchId,
        header_revision: i64,
        first_revision: i64,
        events: I,
    ) -> Result<(), I> {
        let Some(&seq) = self.open.get(&watch_id) else {
            return Err(events);
        };
        let first_seq = self.pushed - self.entries.len() as u64;
        let index = usize::try_from(seq - first_seq).expect("open entries are queued");
        let entry = &mut self.entries[index];
        debug_assert!(!entry.split && entry.response.watch_id == watch_id);
        let follows = entry.response.events.last().is_none_or(|last| first_revision > event_main(last));
        if !follows || entry.response.events.len() + events.len() > WATCH_SYNC_RESPONSE_EVENTS_MAX {
            // Later events go into a new response, which becomes the open one.
            self.open.remove(&watch_id);
            return Err(events);
        }
        entry.response.events.extend(events);
        let header = entry.response.header.get_or_insert_with(Default::default);
        header.revision = header.revision.max(header_revision);
        Ok(())
    }

    fn push_entry(&mut self, response: WatchResponse, fragment: bool) {
        self.entries.push_back(Entry { response, fragment, split: false });
        self.pushed += 1;
    }

    /// Takes the front entry off the queue (it is being sent whole, or its last fragment).
    fn pop_front(&mut self) -> WatchResponse {
        let seq = self.pushed - self.entries.len() as u64;
        let response = self.entries.pop_front().expect("front exists").response;
        if self.open.get(&response.watch_id) == Some(&seq) {
            self.open.remove(&response.watch_id);
        }
        response
    }

    /// Header revisions on the stream never go back (see the type's docs).
    fn monotonic(&mut self, mut response: WatchResponse) -> WatchResponse {
        if let Some(header) = response.header.as_mut() {
            header.revision = header.revision.max(self.last_header_revision);
            self.last_header_revision = header.revision;
        }
        response
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &WatchResponse> {
        self.entries.iter().map(|e| &e.response)
    }

    /// The next response to send: the front response, or its next fragment.
    ///
    /// etcd's `sendFragments`: a response of a watcher that asked for fragments is split when
    /// it encodes to `max_request_bytes` or more and holds more than one event. Each fragment
    /// takes events while it stays below `max_request_bytes` (at least one event, however
    /// large); every fragment but the last has `fragment = true`. All carry the same header and
    /// watch id. Splitting happens here, one fragment per call, so that a huge revision is
    /// never held twice in memory.
    pub(super) fn pop(&mut self, max_request_bytes: usize) -> Option<WatchResponse> {
        let front_seq = self.pushed - self.entries.len() as u64;
        let entry = self.entries.front_mut()?;
        let whole_fits = |r: &WatchResponse| r.encoded_len() < max_request_bytes;
        if !entry.fragment || entry.response.events.len() < 2 || (!entry.split && whole_fits(&entry.response)) {
            let mut response = self.pop_front();
            response.fragment = false;
            return Some(self.monotonic(response));
        }

        // Size of a fragment = its fields without events + each event's length-delimited
        // encoding (a repeated message field is the concatenation of its elements).
        let base = WatchResponse { events: Vec::new(), fragment: true, ..entry.response.clone() }.encoded_len();
        let mut size = base;
        let mut taken = 0;
        for event in &entry.response.events {
            let len = event.encoded_len();
            let event_size = prost::encoding::key_len(EVENTS_FIELD_NUMBER) + prost::length_delimiter_len(len) + len;
            if taken > 0 && size + event_size >= max_request_bytes {
                break;
            }
            size += event_size;
            taken += 1;
        }
        if taken == entry.response.events.len() {
            // The rest fits: the last fragment.
            let mut response = self.pop_front();
            response.fragment = false;
            return Some(self.monotonic(response));
        }
        let rest = entry.response.events.split_off(taken);
        let events = std::mem::replace(&mut entry.response.events, rest);
        entry.split = true;
        // A response being sent in fragments takes no more events.
        if self.open.get(&entry.response.watch_id) == Some(&front_seq) {
            self.open.remove(&entry.response.watch_id);
        }
        let fragment = WatchResponse { events, fragment: true, ..entry.response.clone() };
        Some(self.monotonic(fragment))
    }
}

fn event_main(event: &Event) -> i64 {
    event.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use detcd_proto::mvccpb::KeyValue;

    fn event(i: usize, value_bytes: usize) -> Event {
        Event {
            kv: Some(KeyValue {
                key: Bytes::from(format!("k{i}")),
                mod_revision: 7,
                value: Bytes::from(vec![b'v'; value_bytes]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn response(events: Vec<Event>) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader { revision: 7, ..Default::default() }),
            watch_id: 3,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn fragments_only_when_asked_large_and_plural() {
        let max = 1000;
        let mut q = StreamQueue::default();
        q.push_events(3, 7, vec![event(0, 600), event(1, 600)], false);
        q.push_events(4, 7, vec![event(0, 2000)], true);
        q.push_events(5, 7, vec![event(0, 100), event(1, 100)], true);
        assert_eq!(q.pop(max).unwrap().events.len(), 2, "not asked: whole");
        let single = q.pop(max).unwrap();
        assert!(!single.fragment && single.events.len() == 1, "one event: whole");
        let small = q.pop(max).unwrap();
        assert!(!small.fragment && small.events.len() == 2, "small: whole");
        assert!(q.pop(max).is_none());
    }

    #[test]
    fn fragments_keep_order_header_and_stay_below_the_limit() {
        let max = 1000;
        let events: Vec<Event> = (0..10).map(|i| event(i, 300)).collect();
        let mut q = StreamQueue::default();
        q.push_events(3, 7, events.clone(), true);
        let mut pieces = Vec::new();
        while let Some(piece) = q.pop(max) {
            assert!(q.len() <= 1);
            pieces.push(piece);
        }
        assert!(pieces.len() > 1);
        let (last, rest) = pieces.split_last().unwrap();
        assert!(rest.iter().all(|p| p.fragment) && !last.fragment);
        for p in &pieces {
            assert_eq!((p.watch_id, p.header), (3, response(vec![]).header));
            assert!(p.encoded_len() < max || p.events.len() == 1);
        }
        let joined: Vec<Event> = pieces.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, events);
    }

    fn event_at(revision: i64) -> Event {
        let mut e = event(0, 10);
        e.kv.as_mut().unwrap().mod_revision = revision;
        e
    }

    fn revisions(r: &WatchResponse) -> Vec<i64> {
        r.events.iter().map(event_main).collect()
    }

    fn progress(revision: i64) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader { revision, ..Default::default() }),
            watch_id: -1,
            ..Default::default()
        }
    }

    #[test]
    fn a_waiting_response_takes_its_watchers_later_revisions() {
        let mut q = StreamQueue::default();
        q.push_events(1, 5, vec![event_at(5)], false);
        q.push_events(2, 5, vec![event_at(5)], false);
        assert!(q.coalesce(1, 6, 6, std::iter::once(event_at(6))).is_ok());
        assert!(q.coalesce(2, 6, 6, vec![event_at(6)].into_iter()).is_ok());
        assert!(q.coalesce(3, 6, 6, std::iter::once(event_at(6))).is_err(), "no response of watcher 3 waits");
        assert!(q.coalesce(1, 6, 6, std::iter::once(event_at(6))).is_err(), "revision 6 again: not hidden inside");
        assert_eq!(q.len(), 2);
        let first = q.pop(usize::MAX).unwrap();
        assert_eq!((first.watch_id, first.header.unwrap().revision, revisions(&first)), (1, 6, vec![5, 6]));
        assert!(q.coalesce(1, 7, 7, std::iter::once(event_at(7))).is_err(), "a sent response takes nothing more");
        let second = q.pop(usize::MAX).unwrap();
        assert_eq!((second.watch_id, revisions(&second)), (2, vec![5, 6]));
    }

    #[test]
    fn no_event_moves_ahead_of_a_response_of_another_kind() {
        let mut q = StreamQueue::default();
        q.push_events(1, 5, vec![event_at(5)], false);
        q.push(progress(5), false);
        assert!(q.coalesce(1, 6, 6, std::iter::once(event_at(6))).is_err(), "closed by the progress notification");
        q.push_events(1, 6, vec![event_at(6)], false);
        let sent: Vec<WatchResponse> = std::iter::from_fn(|| q.pop(usize::MAX)).collect();
        let order: Vec<(i64, Vec<i64>)> = sent.iter().map(|r| (r.watch_id, revisions(r))).collect();
        assert_eq!(order, vec![(1, vec![5]), (-1, vec![]), (1, vec![6])]);
    }

    #[test]
    fn a_response_grows_up_to_the_catch_up_bound_and_headers_never_go_back() {
        let mut q = StreamQueue::default();
        q.push_events(1, 1, vec![event_at(1)], false);
        q.push_events(2, 1, vec![event_at(1)], false);
        let mut revision = 1;
        while q.coalesce(1, revision + 1, revision + 1, std::iter::once(event_at(revision + 1))).is_ok() {
            revision += 1;
        }
        assert_eq!(revision as usize, WATCH_SYNC_RESPONSE_EVENTS_MAX);
        q.push_events(1, revision + 1, vec![event_at(revision + 1)], false);
        assert!(
            q.coalesce(1, revision + 2, revision + 2, std::iter::once(event_at(revision + 2))).is_ok(),
            "the new one is open"
        );
        let sent: Vec<WatchResponse> = std::iter::from_fn(|| q.pop(usize::MAX)).collect();
        let headers: Vec<i64> = sent.iter().map(|r| r.header.unwrap().revision).collect();
        // Watcher 2's response (events at 1) follows one with header 1000: raised, not back.
        assert_eq!(headers, vec![revision, revision, revision + 2]);
        assert_eq!(sent[0].events.len(), WATCH_SYNC_RESPONSE_EVENTS_MAX);
        assert_eq!(revisions(&sent[2]), vec![revision + 1, revision + 2]);
    }
}
