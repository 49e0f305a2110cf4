//! Watches: etcd's watch streams, watchers and their guarantees, as a plain state machine.
//!
//! The [`WatchHub`] holds every watcher of a member, grouped by client stream, and turns the
//! store's writes into the [`WatchResponse`]s each stream's client must see. It is etcd's
//! `watchableStore` + `watchStream` + the v3rpc `serverWatchStream`, without goroutines,
//! channels or timers: the driver calls in, and pulls responses out.
//!
//! # Calling contract
//!
//! The driver (the node) owns one [`Store`] and one [`WatchHub`]:
//!
//! 1. **Requests.** Each client `Watch` RPC is a stream; the driver names it with a
//!    [`StreamId`] of its choice, unique among open streams. It hands the stream's requests to
//!    [`WatchHub::handle_request`] (or [`create`](WatchHub::create),
//!    [`cancel`](WatchHub::cancel), [`request_progress`](WatchHub::request_progress)), in
//!    arrival order, **only while [`accepts_requests`](WatchHub::accepts_requests) is true**
//!    for that stream — otherwise it stops reading the stream (gRPC flow control pushes back
//!    on the client), as etcd's receive loop blocks on a full control channel. A stream comes
//!    into being with its first request; [`close_stream`](WatchHub::close_stream) ends it
//!    when the RPC ends, dropping its watchers and queued responses.
//! 2. **Writes.** After every write that created a revision, before anything else touches the
//!    hub, the driver calls [`notify`](WatchHub::notify) with that write's
//!    [`Applied::events`](crate::mvcc::Applied) and the new revision. Every revision, in order:
//!    the hub checks it. (A write that created no revision — a failed txn branch, a delete of
//!    nothing — has no events and needs no call.) If the store is replaced wholesale (a raft
//!    snapshot installed), call [`restored`](WatchHub::restored) instead.
//! 3. **Time and catch-up.** Whenever [`next_deadline`](WatchHub::next_deadline) is at or
//!    before `now`, call [`sync`](WatchHub::sync) with `now` and the store. It catches up
//!    watchers that lag behind from the store's history, in bounded batches, and sends
//!    periodic progress notifications. Ask for the deadline again after every call into the
//!    hub: any of them can change it.
//! 4. **Responses.** [`ready_streams`](WatchHub::ready_streams) lists the streams with
//!    responses queued; [`poll_response`](WatchHub::poll_response) takes the next one of a
//!    stream, **when that stream's client can take it** (its gRPC send is ready). A client that
//!    reads slowly is simply polled less: a watcher's response still waiting takes its later
//!    events (whole revisions, up to
//!    [`WATCH_SYNC_RESPONSE_EVENTS_MAX`](crate::limits::WATCH_SYNC_RESPONSE_EVENTS_MAX)
//!    events), the queue fills up to
//!    [`WATCH_STREAM_RESPONSES_MAX`](crate::limits::WATCH_STREAM_RESPONSES_MAX) responses, and
//!    watchers that find no room fall back to catching up from the store, which loses nothing
//!    as long as the history they need is not compacted. Writes are never blocked or refused
//!    for watchers.
//!
//! Response headers carry only `revision`; the driver fills `cluster_id`, `member_id` and
//! `raft_term` on the way out.
//!
//! # Groups
//!
//! Every watcher is in exactly one group (etcd's, plus one):
//!
//! - **synced**: has been sent every matching event up to the current revision; gets the
//!   events of each new revision from [`notify`](WatchHub::notify). Its next revision is
//!   implicitly `current + 1` (not stored: a write would otherwise touch every watcher).
//! - **unsynced**: its next revision `n <= current`; gets nothing from `notify` and catches up
//!   from the store in [`sync`](WatchHub::sync) (`Store::events_in` after `n - 1`), becoming
//!   synced when it reaches the current revision. A watcher created with a start revision in
//!   the past starts here; a synced watcher whose stream is full at `notify` moves here with
//!   `n` = the revision it could not take (etcd's "victim" path, without a separate victim
//!   list: the store *is* the buffer).
//! - **future**: created with a start revision beyond `current + 1`; joins the synced group
//!   when the store reaches `start - 1`. Kept apart so that no progress notification can claim
//!   a revision below its start (etcd #20221, where a client resumed from such a claim and got
//!   old events).
//!
//! Because a watcher gets a revision's events from exactly one place — `notify` while synced,
//! the store while unsynced — and the switch happens at a precise next revision, no event is
//! lost or delivered twice (etcd #17247, #17529).
//!
//! # Guarantees (checked by the tests of this module)
//!
//! ordered (revisions strictly increase across a watcher's responses, `(main, sub)` order
//! within), unique, atomic (a revision's matching events arrive in one response, unless split
//! into fragments the watcher asked for), reliable (no gap from the start revision on),
//! resumable (a start revision is honoured, also at the compaction revision: etcd #18089,
//! #19179), `prev_kv` as the write saw it, filters honoured, a start or a lag below the
//! compaction ends the watcher with `compact_revision`, and a progress notification never
//! claims a revision whose events are not all queued before it on its stream (etcd #15220).
//!
//! # Where we differ from etcd, on purpose
//!
//! - A `WatchProgressRequest` on a stream with a lagging watcher is *deferred* until the
//!   stream is synced (as etcd 3.5.8–3.5.12 did); current etcd drops it, and the client
//!   never hears back. One deferred response answers every request made while it waits. A
//!   request on a stream without watchers is answered at once (etcd sends nothing).
//! - Events get the `prev_kv` their write produced (the key's previous version, also inside
//!   a txn); etcd reads the key at `mod_revision - 1`, which inside a txn that deletes and
//!   re-puts a key gives the value from before the txn.
//! - Periodic progress notifications tick once for the whole hub, not per stream.
//! - The compaction cancel carries `header.revision` = the current revision (etcd sends 0),
//!   so that header revisions never go back on a stream.
//! - One FIFO per stream carries replies and events alike (etcd has a control channel and
//!   buffers events of ids not yet announced); the order on the wire is the order of the
//!   queue, and a reply waits for the events queued before it.
//! - A synced watcher whose previous response is still queued (its client reads slower than
//!   the writes come) gets its next revisions appended to that response, header revision
//!   raised; etcd queues one response per revision for a synced watcher and gathers
//!   revisions only when catching up. Fewer, larger responses cost the member and the client
//!   less per event; every guarantee above holds (see `queue::StreamQueue`).
//! - A watcher that falls behind is caught up from the store directly; etcd first retries
//!   its held-back batch ("victims"). A catch-up response holds at most
//!   [`WATCH_SYNC_RESPONSE_EVENTS_MAX`](crate::limits::WATCH_SYNC_RESPONSE_EVENTS_MAX)
//!   events plus the rest of a revision, where etcd counts 1000 revisions.
//!
//! Mirrored as etcd does it, although questionable: a client-chosen watch id may be any
//! non-zero value, negative ones included (-1 then reads like [`INVALID_WATCH_ID`]).
//!
//! [`Store`]: crate::mvcc::Store
//! [`WatchResponse`]: detcd_proto::etcdserverpb::WatchResponse

mod hub;
mod queue;

#[cfg(test)]
mod tests;

pub use hub::{StreamId, WatchHub, WatchId, CANCEL_REASON_DUPLICATE_ID, CANCEL_REASON_EMPTY_RANGE, INVALID_WATCH_ID};
