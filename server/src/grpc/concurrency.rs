//! What the lock and election services share: etcd serves them as *clients* of its own KV,
//! Watch and Lease services (`v3lock` and `v3election` run clientv3's `concurrency` package
//! against the member), and so do we — every step is a request to the node through the
//! driver's [`Handle`], every wait a watch on the driver's watch hub: no wait polls (only a
//! read that failed while leadership moved is tried again after a pause, see [`range`]).
//!
//! Errors: etcd's services return the errors of their embedded client, which are Go errors
//! without a gRPC status (clientv3 turns statuses into `rpctypes.EtcdError`, which carries no
//! `GRPCStatus`), so gRPC answers them with code `Unknown` and the error's text — e.g. `Unknown`
//! "etcdserver: requested lease not found", or `Unknown` "election: not leader" (jetcd relies
//! on it: "communicated status is always UNKNOWN"). [`unknown`] and [`failure`] do the same.

use bytes::Bytes;
use detcd_engine::limits;
use detcd_engine::node::{Request, Response};
use detcd_engine::Error;
use detcd_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use detcd_proto::etcdserverpb::watch_request::RequestUnion;
use detcd_proto::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest, WatchResponse,
};
use detcd_proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tonic::{Code, Status};

use super::unexpected;
use crate::driver::{Command, Handle, WATCH_SEND_BUFFER};

/// An error of etcd's embedded client, as etcd's lock and election services answer it.
pub fn unknown(e: Error) -> Status {
    Status::new(Code::Unknown, e.message())
}

/// An error of the services themselves (`election: not leader`, ...), as etcd answers it.
pub fn failure(message: &str) -> Status {
    Status::new(Code::Unknown, message)
}

/// A linearizable read. Unlike etcd's embedded client, a read that failed only because the
/// leader changed or is being elected is tried again (reads change nothing, so this is safe):
/// a waiter whose wait ends just as the leader dies keeps its place instead of failing and
/// leaving the queue. At most [`limits::CONCURRENCY_READ_ATTEMPTS_MAX`] attempts, spaced by
/// [`limits::CONCURRENCY_READ_RETRY_MS`].
pub async fn range(handle: &Handle, request: RangeRequest) -> Result<RangeResponse, Status> {
    let mut attempt = 1;
    loop {
        match handle.call(Request::Range(request.clone())).await {
            Ok(Response::Range(r)) => return Ok(r),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) if is_leader_transient(e) && attempt < limits::CONCURRENCY_READ_ATTEMPTS_MAX => {
                tracing::debug!(error = %e, attempt, "lock/election read failed during a leader change; again");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(limits::CONCURRENCY_READ_RETRY_MS)).await;
            }
            Err(e) => return Err(unknown(e)),
        }
    }
}

/// Errors that a read gets only while leadership moves.
fn is_leader_transient(e: Error) -> bool {
    matches!(e, Error::LeaderChanged | Error::NoLeader | Error::TimeoutDueToLeaderFail)
}

pub async fn txn(handle: &Handle, request: TxnRequest) -> Result<TxnResponse, Status> {
    match handle.call(Request::Txn(request)).await.map_err(unknown)? {
        Response::Txn(r) => Ok(r),
        other => Err(unexpected(&other)),
    }
}

pub async fn delete(handle: &Handle, key: Bytes) -> Result<DeleteRangeResponse, Status> {
    let request = DeleteRangeRequest { key, ..Default::default() };
    match handle.call(Request::DeleteRange(request)).await.map_err(unknown)? {
        Response::DeleteRange(r) => Ok(r),
        other => Err(unexpected(&other)),
    }
}

/// The lease a request's session runs on: the one it names, or — lease 0, etcd's `NoLease` — a
/// new lease of [`limits::CONCURRENCY_SESSION_TTL_S`] that nobody keeps alive (etcd's
/// `NewSession` grants it, the service orphans the session). A named lease is not checked
/// here: the write that attaches it fails with "requested lease not found", as in etcd.
pub async fn session_lease(handle: &Handle, lease: i64) -> Result<i64, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let grant = LeaseGrantRequest { ttl: limits::CONCURRENCY_SESSION_TTL_S, id: 0 };
    match handle.call(Request::LeaseGrant(grant)).await.map_err(unknown)? {
        Response::LeaseGrant(r) => Ok(r.id),
        other => Err(unexpected(&other)),
    }
}

/// `prefix` followed by the lease id in lower-case hex, as Go's `fmt.Sprintf("%s%x")` prints an
/// `int64` (a minus sign, then the magnitude, for a negative id).
pub fn lease_key(prefix: &[u8], lease: i64) -> Bytes {
    let hex = if lease < 0 { format!("-{:x}", lease.unsigned_abs()) } else { format!("{lease:x}") };
    let mut key = prefix.to_vec();
    key.extend_from_slice(hex.as_bytes());
    Bytes::from(key)
}

/// `name` and a slash: the prefix under which a lock's or election's keys live.
pub fn key_prefix(name: &[u8]) -> Bytes {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    Bytes::from(prefix)
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`): the prefix
/// with its last byte below 0xff incremented and what follows dropped; `\0` (to the end of the
/// key space) when every byte is 0xff.
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(i) => {
            let mut end = prefix[..=i].to_vec();
            end[i] += 1;
            Bytes::from(end)
        }
        None => Bytes::from_static(b"\0"),
    }
}

/// The key under `prefix` created first (clientv3's `WithFirstCreate`): the lock holder, the
/// election leader.
pub fn first_created(prefix: &Bytes) -> RangeRequest {
    RangeRequest {
        key: prefix.clone(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// A compare "the key's create revision is `revision`" (0: the key does not exist).
pub fn created_at(key: &Bytes, revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.clone(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

pub fn op(request: request_op::Request) -> RequestOp {
    RequestOp { request: Some(request) }
}

/// The key-values of the `index`th answer of a txn, which must be a range.
pub fn range_kvs(response: &TxnResponse, index: usize) -> Result<&[detcd_proto::mvccpb::KeyValue], Status> {
    match response.responses.get(index).and_then(|r| r.response.as_ref()) {
        Some(response_op::Response::ResponseRange(r)) => Ok(&r.kvs),
        other => Err(Status::internal(format!("detcd: txn answer {index} is not a range: {other:?}"))),
    }
}

/// Waits until no key under `prefix` has a create revision of `max_create_revision` or less
/// (clientv3's `waitDeletes`): finds the youngest such key, waits for its deletion, again. Each
/// key waited for is older than the caller's own, so the wait ends once every waiter queued
/// before the caller is gone. Returns the header of the last (empty) range.
pub async fn wait_deletes(
    handle: &Handle,
    prefix: &Bytes,
    max_create_revision: i64,
) -> Result<Option<ResponseHeader>, Status> {
    loop {
        let last_created = RangeRequest {
            key: prefix.clone(),
            range_end: prefix_end(prefix),
            limit: 1,
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            max_create_revision,
            ..Default::default()
        };
        let found = range(handle, last_created).await?;
        let Some(kv) = found.kvs.first() else { return Ok(found.header) };
        let revision = found.header.as_ref().map_or(0, |h| h.revision);
        wait_delete(handle, kv.key.clone(), revision).await?;
    }
}

/// Waits for a deletion of `key` at revision `from` or later (clientv3's `waitDelete`).
async fn wait_delete(handle: &Handle, key: Bytes, from: i64) -> Result<(), Status> {
    let mut watch = HubWatch::open(handle, key, Bytes::new(), from).await?;
    loop {
        let response = watch.next().await?;
        if response.events.iter().any(|e| e.r#type == EventType::Delete as i32) {
            return Ok(());
        }
    }
}

/// One watcher on a stream of the member's watch hub, for the services' own waits. Dropping it
/// closes the hub stream (also when the RPC that waits is dropped because its client left).
pub struct HubWatch {
    handle: Handle,
    stream: detcd_engine::watch::StreamId,
    responses: mpsc::Receiver<WatchResponse>,
}

impl HubWatch {
    /// Watches `[key, range_end)` (a single key when `range_end` is empty) from revision `from`.
    pub async fn open(handle: &Handle, key: Bytes, range_end: Bytes, from: i64) -> Result<HubWatch, Status> {
        let stream = handle.new_watch_stream();
        let (tx, responses) = mpsc::channel(WATCH_SEND_BUFFER);
        handle
            .send(Command::WatchOpen { stream, responses: tx, caller: detcd_engine::auth::Caller::Internal })
            .await
            .map_err(unknown)?;
        // From here on the hub has the stream: dropping `watch` closes it.
        let watch = HubWatch { handle: handle.clone(), stream, responses };
        let create = WatchCreateRequest { key, range_end, start_revision: from, ..Default::default() };
        let request = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        handle.send(Command::Watch { stream, request }).await.map_err(unknown)?;
        Ok(watch)
    }

    /// The next response that carries events. A canceled watcher is an error: compaction
    /// past its start is etcd's "required revision has been compacted" (what clientv3's watch
    /// reports); the member stopping is "server stopped".
    pub async fn next(&mut self) -> Result<WatchResponse, Status> {
        loop {
            let Some(response) = self.responses.recv().await else { return Err(unknown(Error::Stopped)) };
            if response.canceled {
                if response.compact_revision != 0 {
                    return Err(unknown(Error::Compacted));
                }
                let reason = if response.cancel_reason.is_empty() {
                    Error::WatchCanceled.message().to_owned()
                } else {
                    response.cancel_reason
                };
                return Err(failure(&reason));
            }
            if !response.events.is_empty() {
                return Ok(response);
            }
        }
    }
}

impl Drop for HubWatch {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        let stream = self.stream;
        tokio::task::spawn(async move {
            let _ = handle.send(Command::WatchClose { stream }).await;
        });
    }
}

/// A request that undoes a service's write if the RPC ends before it is disarmed — in
/// particular when tonic drops the RPC because its client canceled it or went away, where
/// etcd's services see their context end and clean up (the lock waiter's key is deleted, the
/// campaigner resigns). Dropping sends the request from a task of its own; [`Self::run`] sends it
/// and waits for it, for error paths that answer the client afterwards.
pub struct Undo {
    handle: Handle,
    request: Option<Request>,
}

impl Undo {
    pub fn new(handle: &Handle, request: Request) -> Undo {
        Undo { handle: handle.clone(), request: Some(request) }
    }

    /// The RPC succeeded: nothing to undo.
    pub fn disarm(mut self) {
        self.request = None;
    }

    /// Undoes now. The undo's own failure is logged: the caller answers with the error that
    /// made it undo.
    pub async fn run(mut self) {
        if let Some(request) = self.request.take() {
            if let Err(e) = self.handle.call(request).await {
                tracing::warn!(error = %e, "could not undo a lock or election write; its lease will");
            }
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(request) = self.request.take() {
            let handle = self.handle.clone();
            tokio::task::spawn(async move {
                if let Err(e) = handle.call(request).await {
                    tracing::warn!(error = %e, "could not undo a canceled lock or election write; its lease will");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_formatted_as_etcds_go_client_formats_them() {
        assert_eq!(lease_key(b"job/", 0x694d_7a3b_1c2d_0001), Bytes::from_static(b"job/694d7a3b1c2d0001"));
        assert_eq!(lease_key(b"job/", -1), Bytes::from_static(b"job/-1"));
        assert_eq!(key_prefix(b"job"), Bytes::from_static(b"job/"));
    }

    #[test]
    fn prefix_ends_follow_etcds_rule() {
        assert_eq!(prefix_end(b"job/"), Bytes::from_static(b"job0"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff\xff"), Bytes::from_static(b"\0"));
    }
}
