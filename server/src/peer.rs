//! The peer transport: raft messages between members, over gRPC (the `peerpb.Peer` service).
//!
//! Each peer has one sender task with a bounded queue. The driver never waits on a peer: a
//! message that does not fit in the queue is dropped, and raft retries (a slow or dead peer must
//! never block the leader or the other peers). The sender keeps one client stream open to the
//! peer and batches whatever queued up into each message; a broken connection is re-dialled
//! with exponential backoff, and messages queued meanwhile are dropped rather than delivered
//! stale.
//!
//! A stream can also stall without breaking: a connection whose packets were lost retransmits
//! with backoff (TCP; madsim's reliable channels likewise retry a message sent over a clogged
//! link with a backoff that doubles up to 10 s), and every later message waits behind it. A
//! stream that stays open but delivers nothing cut a 3-member cluster in two for good (seed 31:
//! after a one-way cut, m2's messages reached m3 ~10 s late, m3's pre-votes and m2's answers
//! arrived stale, and no election ever completed). So, as etcd's rafthttp does (ConnReadTimeout
//! with link heartbeats), an idle sender sends an empty batch every [`PEER_KEEPALIVE`], and the
//! receiver ends a stream on which nothing arrived for [`PEER_STREAM_IDLE_TIMEOUT`]; the sender
//! sees its stream closed and dials a fresh connection, which does not wait behind the old one.
//!
//! A raft snapshot (a state image, possibly gigabytes) travels apart, on its own `Peer.Snapshot`
//! call in chunks of [`SNAPSHOT_CHUNK_BYTES`], so that it neither exceeds a message limit nor
//! holds up the heartbeats behind it; the receiver reassembles it and hands the raft message to
//! its driver, and the sender reports the outcome to its node (raft-rs needs to hear it).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use detcd_engine::node::{Request as NodeRequest, Response as NodeResponse};
use detcd_engine::raft::Message;
use detcd_proto::etcdserverpb::{Member, MemberListRequest};
use detcd_proto::peerpb::peer_client::PeerClient;
use detcd_proto::peerpb::peer_server::Peer;
use detcd_proto::peerpb::{
    forward_request, forward_response, ForwardRequest, ForwardResponse, MembersRequest, MembersResponse,
    RaftMessageBatch, SendAck, SnapshotAck, SnapshotChunk,
};
use protobuf::Message as _;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::timer::Deadline;

use crate::driver::{Command, Handle, Outbox};
use detcd_engine::raft::MessageType;
use tonic::transport::Channel;

/// Messages queued for one peer; beyond this they are dropped.
pub const PEER_QUEUE_MAX: usize = 4096;
/// Raft messages in one batch on the wire.
const BATCH_MESSAGES_MAX: usize = 256;
/// Largest peer message on the wire (batches of raft messages; snapshots travel in chunks).
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bytes of state image per snapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest snapshot a member accepts: 16 GiB (twice etcd's suggested largest quota).
pub const SNAPSHOT_BYTES_MAX: u64 = 16 * 1024 * 1024 * 1024;
/// etcd's answer to a removed member's messages (rafthttp's errMemberRemoved); the removed
/// member stops on hearing it.
pub const MEMBER_REMOVED: &str = "the member has been permanently removed from the cluster";
/// An idle sender sends an empty batch this often, so that its receiver can tell an idle stream
/// from a stalled one (etcd sends link heartbeats every ConnReadTimeout / 3).
pub const PEER_KEEPALIVE: Duration = Duration::from_secs(1);
/// A receiver ends a stream on which no batch arrived for this long (three keepalives missed);
/// the sender then reconnects. Shorter than etcd's 5 s ConnReadTimeout so that a stalled stream
/// costs a few election timeouts, not a dozen.
pub const PEER_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The driver's outbox over gRPC: one sender task per peer, started on first use.
pub struct PeerOutbox {
    from: u64,
    /// Ours, sent with every batch (see `RaftMessageBatch.from_peer_urls`).
    own_urls: Vec<String>,
    cluster_id: u64,
    urls: BTreeMap<u64, Vec<String>>,
    senders: BTreeMap<u64, mpsc::Sender<Message>>,
    handle: Handle,
}

impl PeerOutbox {
    pub fn new(
        from: u64,
        own_urls: Vec<String>,
        cluster_id: u64,
        urls: BTreeMap<u64, Vec<String>>,
        handle: Handle,
    ) -> PeerOutbox {
        PeerOutbox { from, own_urls, cluster_id, urls, senders: BTreeMap::new(), handle }
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
            let from = Sender { id: self.from, urls: self.own_urls.clone(), cluster_id: self.cluster_id };
            tokio::task::spawn(sender(from, to, url, rx, self.handle.clone()));
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

    fn add_remote(&mut self, id: u64, urls: Vec<String>) {
        if id != self.from && !urls.is_empty() && !self.urls.contains_key(&id) {
            tracing::info!(
                peer = format!("{id:x}"),
                ?urls,
                "a member not in our member list yet: answering it at its URLs"
            );
            self.urls.insert(id, urls);
        }
    }
}

/// Who sends, as every batch says.
struct Sender {
    id: u64,
    urls: Vec<String>,
    cluster_id: u64,
}

async fn sender(from: Sender, to: u64, url: String, mut queue: mpsc::Receiver<Message>, handle: Handle) {
    let cluster_id = from.cluster_id;
    let mut backoff = BACKOFF_MIN;
    loop {
        let client = match connect(&url).await {
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
        let mut stream_client = client.clone();
        let mut call = tokio::task::spawn(async move { stream_client.send(Request::new(OkStream(batches_rx))).await });
        // The call's end, if it ended while we waited for messages: the peer's answer says why
        // (a removed member hears it here, and may have nothing more to send for a while).
        let mut keepalive_at = Deadline::new(tokio::time::Instant::now() + PEER_KEEPALIVE);
        let ended = loop {
            keepalive_at.set(tokio::time::Instant::now() + PEER_KEEPALIVE);
            let first = tokio::select! {
                m = queue.recv() => match m {
                    Some(m) => Some(m),
                    None => {
                        call.abort();
                        return;
                    }
                },
                result = &mut call => break Some(result),
                // Nothing to send for a while: a keepalive (an empty batch) shows the receiver
                // that the stream is alive.
                _ = &mut keepalive_at => None,
            };
            let keepalive = first.is_none();
            let mut messages: Vec<Message> = first.into_iter().collect();
            while messages.len() < BATCH_MESSAGES_MAX {
                match queue.try_recv() {
                    Ok(m) => messages.push(m),
                    Err(_) => break,
                }
            }
            // Snapshots go on their own call, beside the stream.
            let (snapshots, rest): (Vec<Message>, Vec<Message>) =
                messages.into_iter().partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            for snapshot in snapshots {
                tokio::task::spawn(send_snapshot(client.clone(), snapshot, cluster_id, handle.clone()));
            }
            let messages = rest;
            // Only snapshots: nothing for the stream, unless this is a keepalive.
            if messages.is_empty() && !keepalive {
                continue;
            }
            let encoded: Vec<Bytes> =
                messages.iter().filter_map(|m| m.write_to_bytes().ok()).map(Bytes::from).collect();
            let batch = RaftMessageBatch {
                from: from.id,
                to,
                cluster_id,
                messages: encoded,
                from_peer_urls: from.urls.clone(),
            };
            if batches_tx.send(batch).await.is_err() {
                break None;
            }
        };
        let ended = match ended {
            Some(result) => Some(result),
            // The stream closed under us: the call is ending; hear its answer, briefly.
            None => tokio::time::timeout(BACKOFF_MAX, &mut call).await.ok(),
        };
        match ended {
            Some(Ok(Err(status))) if status.message() == MEMBER_REMOVED => {
                let _ = handle.send(Command::RemovedFromCluster { by: to }).await;
                return;
            }
            Some(_) => {}
            None => call.abort(),
        }
        tracing::debug!(to, %url, "peer stream ended; reconnecting");
    }
}

/// A peer client for `url`: over TLS (`crate::tls::peer_connector`) for an https:// URL.
pub async fn connect(url: &str) -> Result<PeerClient<Channel>, String> {
    #[cfg(not(madsim))]
    if url.starts_with("https://") {
        let connector = crate::tls::peer::connector()
            .ok_or_else(|| format!("{url}: https:// peer URL without --peer-cert-file"))?;
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).map_err(|e| e.to_string())?;
        let channel = endpoint.connect_with_connector(connector).await.map_err(|e| e.to_string())?;
        return Ok(PeerClient::new(channel));
    }
    PeerClient::connect(url.to_string()).await.map_err(|e| e.to_string())
}

/// How long a joining member waits for one peer's member list.
pub const DISCOVERY_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The first member list one of `urls` answers that `wanted` accepts, asking each URL once, in
/// order (a member may lag behind the cluster: one that has not applied a `MemberAdd` yet, or
/// a removed one that still runs, answers a list without the joiner). `None` when none did.
pub async fn fetch_members(urls: &[String], wanted: impl Fn(&MembersResponse) -> bool) -> Option<MembersResponse> {
    for url in urls {
        let asked = tokio::time::timeout(DISCOVERY_CALL_TIMEOUT, async {
            let mut client = connect(url).await.map_err(|e| e.to_string())?;
            client.members(Request::new(MembersRequest {})).await.map_err(|e| e.message().to_string())
        })
        .await;
        match asked {
            Ok(Ok(answer)) if wanted(answer.get_ref()) => return Some(answer.into_inner()),
            Ok(Ok(_)) => tracing::info!(%url, "peer's member list does not hold this member (yet)"),
            Ok(Err(e)) => tracing::info!(%url, error = %e, "peer did not answer its member list"),
            Err(_) => tracing::info!(%url, "peer did not answer its member list in time"),
        }
    }
    None
}

/// Streams one raft snapshot message in chunks and reports the outcome to the node.
async fn send_snapshot(mut client: PeerClient<Channel>, mut message: Message, cluster_id: u64, handle: Handle) {
    let to = message.to;
    let data = std::mem::take(&mut message.mut_snapshot().data);
    let Ok(metadata) = message.write_to_bytes() else {
        let _ = handle.send(Command::SnapshotStatus { to, delivered: false }).await;
        return;
    };
    let meta = message.get_snapshot().get_metadata();
    let (index, term, from) = (meta.index, meta.term, message.from);
    let mut chunks = Vec::new();
    let mut offset = 0;
    loop {
        let end = (offset + SNAPSHOT_CHUNK_BYTES).min(data.len());
        chunks.push(SnapshotChunk {
            from,
            to,
            index,
            term,
            offset: offset as u64,
            data: data.slice(offset..end),
            last: end == data.len(),
            metadata: if offset == 0 { Bytes::from(metadata.clone()) } else { Bytes::new() },
            cluster_id,
        });
        offset = end;
        if offset >= data.len() {
            break;
        }
    }
    let delivered = client.snapshot(Request::new(tonic::codegen::tokio_stream::iter(chunks))).await.is_ok();
    tracing::info!(to, index, bytes = data.len(), delivered, "raft snapshot sent");
    let _ = handle.send(Command::SnapshotStatus { to, delivered }).await;
}

/// Drops what queues up for `wait` (stale raft messages are worse than none). False when the
/// driver is gone.
async fn drain_for(queue: &mut mpsc::Receiver<Message>, wait: Duration) -> bool {
    let mut deadline = Deadline::new(tokio::time::Instant::now() + wait);
    loop {
        tokio::select! {
            m = queue.recv() => if m.is_none() { return false },
            _ = &mut deadline => return true,
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
        let mut idle_at = Deadline::new(tokio::time::Instant::now() + PEER_STREAM_IDLE_TIMEOUT);
        loop {
            // A live sender sends at least a keepalive every PEER_KEEPALIVE; silence this long
            // means a stalled connection (see the module's comment): ending the call makes the
            // sender dial a fresh one.
            idle_at.set(tokio::time::Instant::now() + PEER_STREAM_IDLE_TIMEOUT);
            let next = tokio::select! {
                next = stream.message() => next,
                _ = &mut idle_at => {
                    tracing::debug!(batches, messages, "peer stream idle; closing it so that the sender reconnects");
                    return Err(Status::unavailable("detcd: peer stream idle; reconnect"));
                }
            };
            let Some(batch) = next? else { break };
            if batch.cluster_id != 0 && batch.cluster_id != self.cluster_id {
                return Err(Status::failed_precondition(format!(
                    "detcd: peer {} belongs to cluster {:x}, not {:x}",
                    batch.from, batch.cluster_id, self.cluster_id
                )));
            }
            if self.handle.is_removed_member(batch.from) {
                return Err(Status::failed_precondition(MEMBER_REMOVED));
            }
            if batch.to != self.member_id {
                return Err(Status::failed_precondition(format!(
                    "detcd: this is member {:x}, not {:x}",
                    self.member_id, batch.to
                )));
            }
            if batches == 0 && !batch.from_peer_urls.is_empty() {
                self.handle.add_remote(batch.from, batch.from_peer_urls.clone());
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

    async fn members(&self, _request: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        let list = NodeRequest::MemberList(MemberListRequest { linearizable: false });
        let members = match self.handle.call(list).await.map_err(crate::grpc::status)? {
            NodeResponse::MemberList(r) => r.members,
            other => return Err(Status::internal(format!("detcd: unexpected answer {other:?}"))),
        };
        Ok(Response::new(MembersResponse { cluster_id: self.cluster_id, member_id: self.member_id, members }))
    }

    /// Reassembles a snapshot sent in chunks and hands the raft message to the driver.
    async fn snapshot(&self, request: Request<Streaming<SnapshotChunk>>) -> Result<Response<SnapshotAck>, Status> {
        let mut stream = request.into_inner();
        let mut message: Option<Message> = None;
        let mut data: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if chunk.cluster_id != 0 && chunk.cluster_id != self.cluster_id {
                return Err(Status::failed_precondition("detcd: snapshot from another cluster"));
            }
            if chunk.offset != data.len() as u64 {
                return Err(Status::invalid_argument(format!(
                    "detcd: snapshot chunk at offset {} where {} was expected",
                    chunk.offset,
                    data.len()
                )));
            }
            if data.len() as u64 + chunk.data.len() as u64 > SNAPSHOT_BYTES_MAX {
                return Err(Status::resource_exhausted("detcd: snapshot larger than this member accepts"));
            }
            if chunk.offset == 0 {
                let m = Message::parse_from_bytes(&chunk.metadata)
                    .map_err(|e| Status::invalid_argument(format!("detcd: snapshot metadata does not decode: {e}")))?;
                message = Some(m);
            }
            data.extend_from_slice(&chunk.data);
            if chunk.last {
                let mut m =
                    message.take().ok_or_else(|| Status::invalid_argument("detcd: snapshot without metadata"))?;
                let index = m.get_snapshot().get_metadata().index;
                let received = data.len() as u64;
                m.mut_snapshot().data = Bytes::from(std::mem::take(&mut data));
                self.handle.send(Command::Peer(m)).await.map_err(crate::grpc::status)?;
                return Ok(Response::new(SnapshotAck { index, received }));
            }
        }
        Err(Status::invalid_argument("detcd: snapshot stream ended before its last chunk"))
    }
}
