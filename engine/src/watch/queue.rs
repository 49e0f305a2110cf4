//! One stream's outbound responses, and the splitting of large ones into fragments.

use std::collections::VecDeque;

use detcd_proto::etcdserverpb::WatchResponse;
use prost::Message;

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
#[derive(Debug, Default)]
pub(super) struct StreamQueue {
    entries: VecDeque<Entry>,
}

impl StreamQueue {
    /// Responses queued (a response being sent in fragments counts once).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn push(&mut self, response: WatchResponse, fragment: bool) {
        self.entries.push_back(Entry { response, fragment, split: false });
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
        let entry = self.entries.front_mut()?;
        let whole_fits = |r: &WatchResponse| r.encoded_len() < max_request_bytes;
        if !entry.fragment || entry.response.events.len() < 2 || (!entry.split && whole_fits(&entry.response)) {
            let mut response = self.entries.pop_front().expect("front exists").response;
            response.fragment = false;
            return Some(response);
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
            let mut response = self.entries.pop_front().expect("front exists").response;
            response.fragment = false;
            return Some(response);
        }
        let rest = entry.response.events.split_off(taken);
        let events = std::mem::replace(&mut entry.response.events, rest);
        entry.split = true;
        Some(WatchResponse { events, fragment: true, ..entry.response.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use detcd_proto::etcdserverpb::ResponseHeader;
    use detcd_proto::mvccpb::{Event, KeyValue};

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
        q.push(response(vec![event(0, 600), event(1, 600)]), false);
        q.push(response(vec![event(0, 2000)]), true);
        q.push(response(vec![event(0, 100), event(1, 100)]), true);
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
        q.push(response(events.clone()), true);
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
}
