//! The peer transport: raft messages between members, over gRPC (the `peerpb.Peer` service).
//!
//! Each peer has one sender task with a bounded queue. The driver never waits on a peer: a
//! message that does not fit in the queue is dropped, and raft retries (a slow or dead peer must
//! never block the leader or the other peers). The sender keeps one client stream open to the
//! peer and batches whatever queued up into each message; a broken connection is re-dialled
//! with exponential backoff, and messages queued meanwhile are dropped rather than delivered
//! stale.
//!
//! Missing: snapshots travel inside their raft message, not in chunks (`Peer.Snapshot` answers
//! `Unimplemented`), so a snapshot is bounded by [`PEER_MESSAGE_BYTES_MAX`].

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use detcd_engine::node::{Request as NodeRequest, Response as NodeResponse};
use detcd_engine::raft::Message;
use detcd_proto::etcdserverpb::Member;
use detcd_proto::peerpb::peer_client::PeerClient;
use detcd_proto::peerpb::peer_server::Peer;
use detcd_proto::peerpb::{
    forward_request, forward_response, ForwardRequest, ForwardResponse, RaftMessageBatch, SendAck, SnapshotAck,
    SnapshotChunk,
};
use protobuf::Message as _;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::driver::{Handle, Outbox};

/// Messages queued for one peer; beyond this they are dropped.
pub const PEER_QUEUE_MAX: usize = 4096;
/// Raft messages in one batch on the wire.
const BATCH_MESSAGES_MAX: usize = 256;
/// Largest peer message (a raft snapshot travels in one): 1 GiB.
pub const PEER_MESSAGE_BYTES_MAX: usize = 1 << 30;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The driver's outbox over gRPC: one sender task per peer, started on first use.
pub struct PeerOutbox {
    from: u64,
    cluster_id: u64,
    urls: BTreeMap<u64, Vec<String>>,
    senders: BTreeMap<u64, mpsc::Sender<Message>>,
}

impl PeerOutbox {
    pub fn new(from: u64, cluster_id: u64, urls: BTreeMap<u64, Vec<String>>) -> PeerOutbox {
        PeerOutbox { from, cluster_id, urls, senders: BTreeMap::new() }
    }
}

impl Outbox for PeerOutbox {
    fn send(&mut self, message: Message) {
        let to = message.to;
        if !self.senders.contains_key(&to) {
            let Some(url) = self.urls.get(&to).and_then(|u| u.first()).cloned() else {
                tracing::debug!(to, "no peer URL known; message dropped");
                return;
            };
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            tokio::task::spawn(sender(self.from, to, self.cluster_id, url, rx));
            self.senders.insert(to, tx);
        }
        if let Some(tx) = self.senders.get(&to) {
            let _ = tx.try_send(message);
        }
    }

    fn update_members(&mut self, members: &[Member]) {
        for m in members {
            if m.id != self.from && !m.peer_ur_ls.is_empty() && self.urls.get(&m.id) != Some(&m.peer_ur_ls) {
                self.urls.insert(m.id, m.peer_ur_ls.clone());
                // A new URL takes effect with a new sender.
                self.senders.remove(&m.id);
            }
        }
        let known: Vec<u64> = members.iter().map(|m| m.id).collect();
        self.senders.retain(|id, _| known.contains(id));
    }
}

async fn sender(from: u64, to: u64, cluster_id: u64, url: String, mut queue: mpsc::Receiver<Message>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let client = match PeerClient::connect(url.clone()).await {
            Ok(c) => c.max_encoding_message_size(PEER_MESSAGE_BYTES_MAX),
            Err(e) => {
                tracing::debug!(to, %url, error = %e, "peer unreachable");
                if !drain_for(&mut queue, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        let (batches_tx, batches_rx) = mpsc::channel(16);
        let mut client = client;
        let call = tokio::task::spawn(async move { client.send(Request::new(OkStream(batches_rx))).await });
        loop {
            let Some(first) = queue.recv().await else { return };
            let mut messages = vec![first];
            while messages.len() < BATCH_MESSAGES_MAX {
                match queue.try_recv() {
                    Ok(m) => messages.push(m),
                    Err(_) => break,
                }
            }
            let encoded: Vec<Bytes> =
                messages.iter().filter_map(|m| m.write_to_bytes().ok()).map(Bytes::from).collect();
            let batch = RaftMessageBatch { from, to, cluster_id, messages: encoded };
            if batches_tx.send(batch).await.is_err() || call.is_finished() {
                break;
            }
        }
        call.abort();
        tracing::debug!(to, %url, "peer stream ended; reconnecting");
    }
}

/// Drops what queues up for `wait` (stale raft messages are worse than none). False when the
/// driver is gone.
async fn drain_for(queue: &mut mpsc::Receiver<Message>, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        tokio::select! {
            m = queue.recv() => if m.is_none() { return false },
            _ = tokio::time::sleep_until(deadline) => return true,
        }
    }
}

/// A stream of plain items for a client-streaming call.
struct OkStream<T>(mpsc::Receiver<T>);

impl<T> tonic::codegen::tokio_stream::Stream for OkStream<T> {
    type Item = T;

    fn poll_next(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// The receiving side: decodes batches and hands their messages to the driver.
pub struct PeerService {
    pub handle: Handle,
    pub cluster_id: u64,
    pub member_id: u64,
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn send(&self, request: Request<Streaming<RaftMessageBatch>>) -> Result<Response<SendAck>, Status> {
        let mut stream = request.into_inner();
        let (mut batches, mut messages) = (0u64, 0u64);
        while let Some(batch) = stream.message().await? {
            if batch.cluster_id != 0 && batch.cluster_id != self.cluster_id {
                return Err(Status::failed_precondition(format!(
                    "detcd: peer {} belongs to cluster {:x}, not {:x}",
                    batch.from, batch.cluster_id, self.cluster_id
                )));
            }
            if batch.to != self.member_id {
                return Err(Status::failed_precondition(format!(
                    "detcd: this is member {:x}, not {:x}",
                    self.member_id, batch.to
                )));
            }
            batches += 1;
            for bytes in &batch.messages {
                match Message::parse_from_bytes(bytes) {
                    Ok(m) => {
                        messages += 1;
                        self.handle.deliver(m);
                    }
                    Err(e) => tracing::warn!(from = batch.from, error = %e, "undecodable raft message dropped"),
                }
            }
        }
        Ok(Response::new(SendAck { batches, messages }))
    }

    /// A request forwarded by another member to us as the leader. Never forwarded again: if we
    /// no longer lead, the member that forwarded gets `not leader` and its client retries.
    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<ForwardResponse>, Status> {
        use forward_request::Request as In;
        use forward_response::Response as Out;
        let node_request = match request.into_inner().request {
            Some(In::LeaseKeepAlive(r)) => NodeRequest::LeaseKeepAlive(r),
            Some(In::LeaseTimeToLive(r)) => NodeRequest::LeaseTimeToLive(r),
            Some(In::MemberPromote(r)) => NodeRequest::MemberPromote(r),
            Some(In::MoveLeader(r)) => NodeRequest::MoveLeader(r),
            None => return Err(Status::invalid_argument("detcd: empty forwarded request")),
        };
        let response = match self.handle.call(node_request).await.map_err(crate::grpc::status)? {
            NodeResponse::LeaseKeepAlive(r) => Out::LeaseKeepAlive(r),
            NodeResponse::LeaseTimeToLive(r) => Out::LeaseTimeToLive(r),
            NodeResponse::MemberPromote(r) => Out::MemberPromote(r),
            NodeResponse::MoveLeader(r) => Out::MoveLeader(r),
            other => return Err(Status::internal(format!("detcd: unexpected answer {other:?}"))),
        };
        Ok(Response::new(ForwardResponse { response: Some(response) }))
    }

    async fn snapshot(&self, _request: Request<Streaming<SnapshotChunk>>) -> Result<Response<SnapshotAck>, Status> {
        Err(Status::unimplemented("detcd: chunked snapshots are not supported yet; snapshots travel in Send"))
    }
}
