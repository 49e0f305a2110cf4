//! The driver: one async loop that owns the member's [`Node`] and carries out its outputs.
//!
//! Everything that touches the node goes through [`Handle`] as a [`Command`] on one channel, so
//! the node is only ever called from this loop — no locks, and the order of inputs is the order
//! of the channel. Each turn of the loop:
//!
//! 1. drains the node's outputs: raft messages go to the transport (never waiting on a peer),
//!    answers go to the waiting callers, persists are collected;
//! 2. makes the collected persists durable with one sync (group commit: everything that arrived
//!    while the previous sync ran is in this one), then tells the node;
//! 3. hands watch responses to the watch streams that have room (a slow client is polled less;
//!    its watchers fall back to catching up from the store);
//! 4. waits for the next command or the node's next timeout.
//!
//! A disk error stops the member: raft's promise to its peers depends on what it persisted, so
//! a member that cannot persist must not go on (as etcd panics on a failed fsync).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use detcd_engine::node::{Node, Output, Persist, Request, RequestId, Response};
use detcd_engine::raft::Message;
use detcd_engine::watch::StreamId;
use detcd_engine::Error;
use detcd_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::disk::Storage;

/// Commands queued for the driver at most; a full queue makes callers wait (backpressure).
pub const COMMAND_QUEUE_MAX: usize = 4096;
/// Commands taken per turn of the loop before outputs are carried out.
const COMMANDS_PER_TURN_MAX: usize = 1024;
/// Watch responses buffered per stream on their way to the client.
pub const WATCH_SEND_BUFFER: usize = 16;

/// A snapshot of the member's state, for Status and tests.
#[derive(Debug, Clone, Default)]
pub struct MemberStatus {
    pub member_id: u64,
    pub cluster_id: u64,
    pub leader_id: u64,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub is_learner: bool,
}

pub enum Command {
    Request {
        request: Request,
        reply: oneshot::Sender<Result<Response, Error>>,
    },
    WatchOpen {
        stream: StreamId,
        responses: mpsc::Sender<WatchResponse>,
    },
    Watch {
        stream: StreamId,
        request: WatchRequest,
    },
    WatchClose {
        stream: StreamId,
    },
    Peer(Message),
    Status {
        reply: oneshot::Sender<MemberStatus>,
    },
    /// The applied state as a state image.
    Snapshot {
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// The store's hash at a revision (0: the current one).
    HashKv {
        revision: i64,
        reply: oneshot::Sender<Result<detcd_engine::mvcc::KvHash, Error>>,
    },
    /// The peer URL of the leader, if another member leads.
    LeaderPeerUrl {
        reply: oneshot::Sender<Option<String>>,
    },
    /// The transport delivered a raft snapshot to `to`, or failed to.
    SnapshotStatus {
        to: u64,
        delivered: bool,
    },
    /// A peer refused our messages: this member was removed from the cluster (it may never
    /// apply its own removal: the leader stops replicating to it once the removal commits).
    RemovedFromCluster {
        by: u64,
    },
}

/// Cheap to clone; every gRPC handler holds one.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    /// Members removed from the cluster, as of the driver's applied index: the peer service
    /// refuses their messages without a round trip through the driver.
    removed: Arc<RwLock<BTreeSet<u64>>>,
    /// The next watch hub stream id. One counter per member, shared by every client listener
    /// and by the services that watch on a client's behalf (lock, election), so that no two
    /// streams share an id.
    next_watch_stream: Arc<AtomicU64>,
}

impl Handle {
    /// A watch hub stream id no other stream of this member uses.
    pub fn new_watch_stream(&self) -> StreamId {
        self.next_watch_stream.fetch_add(1, Ordering::Relaxed)
    }

    pub async fn call(&self, request: Request) -> Result<Response, Error> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Request { request, reply }).await.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)?
    }

    pub async fn status(&self) -> Result<MemberStatus, Error> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Status { reply }).await.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    pub async fn hash_kv(&self, revision: i64) -> Result<detcd_engine::mvcc::KvHash, Error> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::HashKv { revision, reply }).await.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)?
    }

    pub async fn leader_peer_url(&self) -> Result<Option<String>, Error> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::LeaderPeerUrl { reply }).await.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    pub async fn snapshot(&self) -> Result<Vec<u8>, Error> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Snapshot { reply }).await.map_err(|_| Error::Stopped)?;
        answer.await.map_err(|_| Error::Stopped)
    }

    /// Whether `id` was removed from the cluster.
    pub fn is_removed_member(&self, id: u64) -> bool {
        self.removed.read().unwrap_or_else(|p| p.into_inner()).contains(&id)
    }

    pub async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| Error::Stopped)
    }

    /// For the peer transport: never waits; a message that does not fit is dropped (raft
    /// retries).
    pub fn deliver(&self, message: Message) {
        let _ = self.commands.try_send(Command::Peer(message));
    }
}

/// Where raft messages go: a sender per peer, filled by the driver, drained by the transport.
/// `send` must never wait.
pub trait Outbox: Send {
    fn send(&mut self, message: Message);
    /// The member list changed (URLs of new or updated members).
    fn update_members(&mut self, members: &[detcd_proto::etcdserverpb::Member]);
}

pub struct Driver<S: Storage> {
    node: Node,
    storage: S,
    outbox: Box<dyn Outbox>,
    clock: Clock,
    commands: mpsc::Receiver<Command>,
    waiting: BTreeMap<RequestId, oneshot::Sender<Result<Response, Error>>>,
    next_request_id: RequestId,
    watch_streams: BTreeMap<StreamId, mpsc::Sender<WatchResponse>>,
    /// Watch requests the hub could not take yet (its stream was full), in order.
    watch_backlog: BTreeMap<StreamId, VecDeque<WatchRequest>>,
    /// The member list the outbox last heard of.
    members_seen: Vec<detcd_proto::etcdserverpb::Member>,
    /// The applied index at which the member list was last compared: it changes only by applies.
    members_checked_at: u64,
    /// Shared with every handle: see [`Handle::is_removed_member`].
    removed_members: Arc<RwLock<BTreeSet<u64>>>,
    /// A peer told us we were removed.
    told_removed: bool,
}

impl<S: Storage> Driver<S> {
    /// `outbox` is built with the driver's handle, for transports that report back (a snapshot
    /// delivered or not).
    pub fn new(
        node: Node,
        storage: S,
        outbox: impl FnOnce(Handle) -> Box<dyn Outbox>,
        clock: Clock,
    ) -> (Driver<S>, Handle) {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE_MAX);
        let removed_members = Arc::new(RwLock::new(BTreeSet::new()));
        let next_watch_stream = Arc::new(AtomicU64::new(1));
        let outbox = outbox(Handle {
            commands: tx.clone(),
            removed: removed_members.clone(),
            next_watch_stream: next_watch_stream.clone(),
        });
        let driver = Driver {
            node,
            storage,
            outbox,
            clock,
            commands: rx,
            waiting: BTreeMap::new(),
            next_request_id: 1,
            watch_streams: BTreeMap::new(),
            watch_backlog: BTreeMap::new(),
            members_seen: Vec::new(),
            members_checked_at: 0,
            removed_members: removed_members.clone(),
            told_removed: false,
        };
        (driver, Handle { commands: tx, removed: removed_members, next_watch_stream })
    }

    /// Runs until every handle is gone, or the disk fails (then returns the error).
    pub async fn run(mut self) -> Result<(), String> {
        // One timer for the whole loop (see `crate::timer`): the node's next timeout rarely moves.
        let mut timeout = crate::timer::Deadline::new(tokio::time::Instant::now());
        loop {
            self.carry_out_outputs()?;
            let applied = self.node.applied_index();
            let members = if applied != self.members_checked_at { self.node.members() } else { Vec::new() };
            self.members_checked_at = applied;
            if !members.is_empty() && members != self.members_seen {
                self.outbox.update_members(&members);
                self.members_seen = members;
                let removed: BTreeSet<u64> = self.node.removed_member_ids().into_iter().collect();
                *self.removed_members.write().unwrap_or_else(|p| p.into_inner()) = removed;
            }
            let stalled_watches = self.feed_watches();
            let mut deadline = self.clock.runtime_instant(self.node.poll_timeout());
            if stalled_watches {
                // A client is slow to read: look again shortly for room in its stream.
                deadline = deadline.min(tokio::time::Instant::now() + std::time::Duration::from_millis(10));
            }
            timeout.set(deadline);
            tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { return Ok(()) };
                    self.handle(command);
                    for _ in 0..COMMANDS_PER_TURN_MAX {
                        match self.commands.try_recv() {
                            Ok(command) => self.handle(command),
                            Err(_) => break,
                        }
                    }
                }
                _ = &mut timeout => {
                    self.node.handle_timeout(self.clock.now());
                }
            }
            if self.node.is_removed() || self.told_removed {
                tracing::warn!("this member was removed from the cluster; stopping");
                return Ok(());
            }
        }
    }

    fn handle(&mut self, command: Command) {
        let now = self.clock.now();
        match command {
            Command::Request { request, reply } => {
                let id = self.next_request_id;
                self.next_request_id += 1;
                self.waiting.insert(id, reply);
                self.node.handle_request(now, id, request);
            }
            Command::Peer(message) => self.node.handle_message(now, message),
            Command::SnapshotStatus { to, delivered } => self.node.handle_snapshot_status(now, to, delivered),
            Command::RemovedFromCluster { by } => {
                tracing::warn!(by = format!("{by:x}"), "a peer says this member was removed from the cluster");
                self.told_removed = true;
            }
            Command::WatchOpen { stream, responses } => {
                self.watch_streams.insert(stream, responses);
            }
            Command::Watch { stream, request } => {
                self.watch_backlog.entry(stream).or_default().push_back(request);
            }
            Command::WatchClose { stream } => {
                self.watch_streams.remove(&stream);
                self.watch_backlog.remove(&stream);
                self.node.watch_close(stream);
            }
            Command::HashKv { revision, reply } => {
                let _ = reply.send(self.node.store().hash_kv(revision));
            }
            Command::LeaderPeerUrl { reply } => {
                let leader = self.node.leader_id();
                let url = (leader != 0 && leader != self.node.id())
                    .then(|| self.node.members().into_iter().find(|m| m.id == leader))
                    .flatten()
                    .and_then(|m| m.peer_ur_ls.first().cloned());
                let _ = reply.send(url);
            }
            Command::Snapshot { reply } => {
                let _ = reply.send(self.node.state_image());
            }
            Command::Status { reply } => {
                let store = self.node.store();
                let _ = reply.send(MemberStatus {
                    member_id: self.node.id(),
                    cluster_id: self.node.cluster_id(),
                    leader_id: self.node.leader_id(),
                    term: self.node.term(),
                    commit_index: self.node.commit_index(),
                    applied_index: self.node.applied_index(),
                    revision: store.current_revision(),
                    is_learner: self.node.learners().contains(&self.node.id()),
                });
            }
        }
    }

    fn carry_out_outputs(&mut self) -> Result<(), String> {
        loop {
            let mut persists: Vec<Persist> = Vec::new();
            while let Some(output) = self.node.poll_output() {
                match output {
                    Output::Send(message) => self.outbox.send(message),
                    Output::Persist(p) => persists.push(p),
                    Output::Snapshot { snapshot, log_kept_from } => {
                        self.storage.save_snapshot(&snapshot, log_kept_from).map_err(|e| e.to_string())?
                    }
                    Output::Respond { id, result } => {
                        if let Some(reply) = self.waiting.remove(&id) {
                            let _ = reply.send(result);
                        }
                    }
                }
            }
            if persists.is_empty() {
                return Ok(());
            }
            self.storage.persist(&persists).map_err(|e| format!("cannot persist, stopping: {e}"))?;
            let now = self.clock.now();
            for p in &persists {
                self.node.handle_persisted(now, p.token);
            }
        }
    }

    /// Moves watch requests into the hub while it takes them, and responses out to streams
    /// with room. Returns whether some stream has responses waiting that did not fit.
    fn feed_watches(&mut self) -> bool {
        let now = self.clock.now();
        for (&stream, backlog) in self.watch_backlog.iter_mut() {
            while self.node.watch_accepts(stream) {
                let Some(request) = backlog.pop_front() else { break };
                self.node.watch_request(now, stream, &request);
            }
        }
        self.watch_backlog.retain(|_, b| !b.is_empty());
        let mut stalled = !self.watch_backlog.is_empty();
        for stream in self.node.watch_ready_streams() {
            let Some(tx) = self.watch_streams.get(&stream) else { continue };
            loop {
                match tx.try_reserve() {
                    Ok(permit) => match self.node.watch_poll(stream) {
                        Some(response) => permit.send(response),
                        None => break,
                    },
                    Err(mpsc::error::TrySendError::Full(())) => {
                        stalled = true;
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(())) => break,
                }
            }
        }
        stalled
    }
}
