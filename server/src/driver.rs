//! The driver: one async loop that owns the member's [`Node`] and carries out its outputs.
//!
//! Everything that touches the node goes through [`Handle`] as a [`Command`] on one channel, so
//! the node is only ever called from this loop — no locks, and the order of inputs is the order
//! of the channel. Each turn of the loop:
//!
//! 1. drains the node's outputs: raft messages go to the transport (never waiting on a peer),
//!    answers go to the waiting callers, persists are collected;
//! 2. makes the collected persists durable with one sync (group commit: everything that arrived
//!    while the previous sync ran is in this one), then tells the node. The write and sync run
//!    on a blocking thread while the loop goes on taking commands and peer messages (etcd, too,
//!    overlaps its fsync with raft's next round): the node has at most one persist in flight,
//!    so the next batch gathers in raft until this one is durable;
//! 3. hands watch responses to the watch streams that have room (a slow client is polled less;
//!    its watchers fall back to catching up from the store);
//! 4. waits for the next command or the node's next timeout.
//!
//! A disk error stops the member: raft's promise to its peers depends on what it persisted, so
//! a member that cannot persist must not go on (as etcd panics on a failed fsync).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use detcd_engine::node::{Node, Output, Persist, PersistToken, Request, RequestId, Response};
use detcd_engine::raft::Message;
use detcd_engine::watch::StreamId;
use detcd_engine::Error;
use detcd_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::clock::Clock;
use crate::disk::{DiskError, Storage};
use crate::metrics::Metrics;

/// Commands queued for the driver at most; a full queue makes callers wait (backpressure).
pub const COMMAND_QUEUE_MAX: usize = 4096;
/// Commands taken per turn of the loop before outputs are carried out.
const COMMANDS_PER_TURN_MAX: usize = 1024;
/// Watch responses buffered per stream on their way to the client. One write fans out one
/// response per watcher: a deeper buffer lets gRPC encode many per wake-up.
pub const WATCH_SEND_BUFFER: usize = 64;

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
    /// The store's size as the quota counts it ([`detcd_engine::mvcc::Store::size_bytes`]).
    pub db_size_bytes: u64,
    /// Whether any alarm is raised (NOSPACE, CORRUPT) anywhere in the cluster.
    pub alarmed: bool,
}

pub enum Command {
    Request {
        caller: detcd_engine::auth::Caller,
        request: Request,
        reply: oneshot::Sender<Result<Response, Error>>,
    },
    WatchOpen {
        stream: StreamId,
        responses: mpsc::Sender<WatchResponse>,
        /// Whose stream: every watch it creates is checked against this caller's permissions.
        caller: detcd_engine::auth::Caller,
    },
    Watch {
        stream: StreamId,
        request: WatchRequest,
    },
    WatchClose {
        stream: StreamId,
    },
    Peer(Message),
    /// The peer URLs of member `id`, which sent us raft messages (see [`Outbox::add_remote`]).
    AddRemote {
        id: u64,
        urls: Vec<String>,
    },
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
    /// Signalled by watch streams as their client drains them (see [`WatchResponses`]).
    watch_room: Arc<Notify>,
    /// Whether this member is a learner, as of its applied configuration (etcd's
    /// `IsLearner`): read by every client RPC, so an atomic rather than a driver round trip.
    learner: Arc<AtomicBool>,
    /// Whether auth is enabled, as of the applied state: the RPCs served outside the engine
    /// (snapshot, hash, Lock, Election) skip their permission round trip while it is off.
    auth_enabled: Arc<AtomicBool>,
    /// The member's metrics (`GET /metrics`), updated by the driver and the gRPC server.
    metrics: Arc<Metrics>,
    /// With `--auth-token jwt,...`: client tokens are verified here, on the caller's task,
    /// before the engine sees them (`crate::jwt`).
    jwt: Option<Arc<crate::jwt::JwtTokens>>,
}

impl Handle {
    /// Verifies client JWTs with `tokens` from now on (set before the handle is cloned for
    /// the client services).
    pub fn set_jwt(&mut self, tokens: Arc<crate::jwt::JwtTokens>) {
        self.jwt = Some(tokens);
    }

    pub fn jwt(&self) -> Option<&Arc<crate::jwt::JwtTokens>> {
        self.jwt.as_ref()
    }

    /// `caller` as the engine is to see it: a verified JWT becomes [`Caller::Jwt`].
    ///
    /// [`Caller::Jwt`]: detcd_engine::auth::Caller::Jwt
    pub fn verified(&self, caller: detcd_engine::auth::Caller) -> detcd_engine::auth::Caller {
        match &self.jwt {
            Some(tokens) => tokens.caller(caller, crate::jwt::unix_now_s()),
            None => caller,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// etcd serves a learner's clients only `Status`, serializable `Range` and the `Snapshot`
    /// stream (its v3rpc interceptors: `isRPCSupportedForLearner` for unary calls, every stream
    /// but `Snapshot` refused): every other client RPC starts with this check.
    pub fn auth_enabled(&self) -> bool {
        self.auth_enabled.load(Ordering::Relaxed)
    }

    pub fn refuse_if_learner(&self) -> Result<(), Error> {
        if self.learner.load(Ordering::Relaxed) {
            Err(Error::LearnerNotSupported)
        } else {
            Ok(())
        }
    }

    /// A watch hub stream id no other stream of this member uses.
    pub fn new_watch_stream(&self) -> StreamId {
        self.next_watch_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// A request of the member itself (never checked against auth).
    pub async fn call(&self, request: Request) -> Result<Response, Error> {
        self.call_as(detcd_engine::auth::Caller::Internal, request).await
    }

    /// A client's request, checked against auth as `caller`.
    pub async fn call_as(&self, caller: detcd_engine::auth::Caller, request: Request) -> Result<Response, Error> {
        let caller = self.verified(caller);
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Request { caller, request, reply }).await.map_err(|_| Error::Stopped)?;
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

    /// The receiving end of a watch stream's responses, to go with a [`Command::WatchOpen`].
    pub fn watch_responses(&self, rx: mpsc::Receiver<WatchResponse>) -> WatchResponses {
        WatchResponses { rx, room: self.watch_room.clone() }
    }

    /// Whether `id` was removed from the cluster.
    pub fn is_removed_member(&self, id: u64) -> bool {
        self.removed.read().unwrap_or_else(|p| p.into_inner()).contains(&id)
    }

    pub async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| Error::Stopped)
    }

    /// For the peer transport: a peer's URLs, from a stream it opened to us (see
    /// [`Outbox::add_remote`]). Never waits: the next stream tells again.
    pub fn add_remote(&self, id: u64, urls: Vec<String>) {
        let _ = self.commands.try_send(Command::AddRemote { id, urls });
    }

    /// For the peer transport: never waits; a message that does not fit is dropped (raft
    /// retries).
    pub fn deliver(&self, message: Message) {
        let _ = self.commands.try_send(Command::Peer(message));
    }
}

/// A watch stream's responses on their way to gRPC. Receiving the one that takes the buffer
/// down to half full wakes the driver, which may have more for this stream.
pub struct WatchResponses {
    rx: mpsc::Receiver<WatchResponse>,
    room: Arc<Notify>,
}

impl tonic::codegen::tokio_stream::Stream for WatchResponses {
    type Item = Result<WatchResponse, tonic::Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = self.rx.poll_recv(cx);
        if polled.is_ready() && self.rx.len() == WATCH_SEND_BUFFER / 2 {
            self.room.notify_one();
        }
        polled.map(|response| response.map(Ok))
    }
}

/// Where raft messages go: a sender per peer, filled by the driver, drained by the transport.
/// `send` must never wait.
pub trait Outbox: Send {
    fn send(&mut self, message: Message);
    /// The member list changed (URLs of new or updated members).
    fn update_members(&mut self, members: &[detcd_proto::etcdserverpb::Member]);
    /// A member that sent us messages, at these URLs: kept as its return address only while the
    /// member list does not give one. A member that missed a membership change (partitioned
    /// while a member was added, and that member now leads) could not answer the new leader
    /// until it applied the addition, which only the leader's answers can bring: both stuck
    /// for good (found by the simulator, seed 298 of a 5-member sweep).
    fn add_remote(&mut self, id: u64, urls: Vec<String>);
}

/// A persist running on a blocking thread: the storage goes with it and comes back with the
/// tokens it made durable, or the error that stops the member.
type PersistJob<S> = tokio::task::JoinHandle<PersistOutcome<S>>;

pub struct Driver<S: Storage> {
    node: Node,
    /// `None` while `persisting` has it.
    storage: Option<S>,
    persisting: Option<PersistJob<S>>,
    /// Persists that are durable and not yet reported to the node, in order.
    persisted: Vec<PersistToken>,
    outbox: Box<dyn Outbox>,
    clock: Clock,
    commands: mpsc::Receiver<Command>,
    waiting: BTreeMap<RequestId, oneshot::Sender<Result<Response, Error>>>,
    next_request_id: RequestId,
    watch_streams: BTreeMap<StreamId, mpsc::Sender<WatchResponse>>,
    /// Who opened each watch stream (auth).
    watch_callers: BTreeMap<StreamId, detcd_engine::auth::Caller>,
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
    /// Wakes the loop when a stalled watch stream has room again.
    watch_room: Arc<Notify>,
    /// Shared with every handle: see [`Handle::refuse_if_learner`].
    learner: Arc<AtomicBool>,
    /// Whether auth is enabled, as of the applied state: RPCs served outside the engine skip
    /// their permission round trip while it is off.
    auth_enabled: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    /// The last leader seen (0: none), for `leader_changes_seen`.
    leader_seen: u64,
}

impl<S: Storage + 'static> Driver<S> {
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
        let watch_room = Arc::new(Notify::new());
        let learner = Arc::new(AtomicBool::new(false));
        let auth_enabled = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::default());
        let outbox = outbox(Handle {
            commands: tx.clone(),
            removed: removed_members.clone(),
            next_watch_stream: next_watch_stream.clone(),
            watch_room: watch_room.clone(),
            learner: learner.clone(),
            auth_enabled: auth_enabled.clone(),
            metrics: metrics.clone(),
            jwt: None,
        });
        let driver = Driver {
            node,
            storage: Some(storage),
            persisting: None,
            persisted: Vec::new(),
            outbox,
            clock,
            commands: rx,
            waiting: BTreeMap::new(),
            next_request_id: 1,
            watch_streams: BTreeMap::new(),
            watch_callers: BTreeMap::new(),
            watch_backlog: BTreeMap::new(),
            members_seen: Vec::new(),
            members_checked_at: 0,
            removed_members: removed_members.clone(),
            told_removed: false,
            watch_room: watch_room.clone(),
            learner: learner.clone(),
            auth_enabled: auth_enabled.clone(),
            metrics: metrics.clone(),
            leader_seen: 0,
        };
        (
            driver,
            Handle {
                commands: tx,
                removed: removed_members,
                next_watch_stream,
                watch_room,
                learner,
                auth_enabled,
                metrics,
                jwt: None,
            },
        )
    }

    /// Runs until every handle is gone, or the disk fails (then returns the error).
    pub async fn run(mut self) -> Result<(), String> {
        // One timer for the whole loop (see `crate::timer`): the node's next timeout rarely moves.
        let mut timeout = crate::timer::Deadline::new(tokio::time::Instant::now());
        loop {
            self.carry_out_outputs().await?;
            let applied = self.node.applied_index();
            // The configuration changes only by applies (as in Status: raft's own view).
            let changed = applied != self.members_checked_at && !self.node.members_are(&self.members_seen);
            if applied != self.members_checked_at {
                self.learner.store(self.node.is_learner(self.node.id()), Ordering::Relaxed);
                self.auth_enabled.store(self.node.auth().is_enabled(), Ordering::Relaxed);
            }
            self.members_checked_at = applied;
            if changed {
                let members = self.node.members();
                self.outbox.update_members(&members);
                self.members_seen = members;
                let removed: BTreeSet<u64> = self.node.removed_member_ids().into_iter().collect();
                *self.removed_members.write().unwrap_or_else(|p| p.into_inner()) = removed;
            }
            self.update_metrics();
            let stalled_watches = self.feed_watches();
            let mut deadline = self.clock.runtime_instant(self.node.poll_timeout());
            if stalled_watches {
                // A client is slow to read: its stream wakes us as it drains (`watch_room`);
                // look again shortly anyway, in case the room came from elsewhere.
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
                _ = self.watch_room.notified(), if stalled_watches => {}
                joined = join_persist(&mut self.persisting), if self.persisting.is_some() => {
                    self.persisting = None;
                    self.finish_persist(joined)?;
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
            Command::Request { caller, request, reply } => {
                let id = self.next_request_id;
                self.next_request_id += 1;
                self.waiting.insert(id, reply);
                self.node.handle_request_as(now, id, caller, request);
            }
            Command::Peer(message) => self.node.handle_message(now, message),
            Command::AddRemote { id, urls } => self.outbox.add_remote(id, urls),
            Command::SnapshotStatus { to, delivered } => self.node.handle_snapshot_status(now, to, delivered),
            Command::RemovedFromCluster { by } => {
                tracing::warn!(by = format!("{by:x}"), "a peer says this member was removed from the cluster");
                self.told_removed = true;
            }
            Command::WatchOpen { stream, responses, caller } => {
                self.watch_streams.insert(stream, responses);
                self.watch_callers.insert(stream, caller);
            }
            Command::Watch { stream, request } => {
                self.watch_backlog.entry(stream).or_default().push_back(request);
            }
            Command::WatchClose { stream } => {
                self.watch_streams.remove(&stream);
                self.watch_callers.remove(&stream);
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
                    db_size_bytes: store.size_bytes(),
                    alarmed: !self.node.alarms().is_empty(),
                });
            }
        }
    }

    /// The gauges and counters that mirror the node's state (a few atomic stores per turn).
    fn update_metrics(&mut self) {
        let m = &self.metrics;
        let leader = self.node.leader_id();
        if leader != 0 && leader != self.leader_seen {
            m.leader_changes_seen.fetch_add(1, Ordering::Relaxed);
        }
        self.leader_seen = leader;
        m.has_leader.store(u64::from(leader != 0), Ordering::Relaxed);
        m.is_leader.store(u64::from(leader == self.node.id()), Ordering::Relaxed);
        m.proposals_committed.store(self.node.commit_index(), Ordering::Relaxed);
        m.proposals_applied.store(self.node.applied_index(), Ordering::Relaxed);
        m.proposals_pending.store(self.node.proposals_pending() as u64, Ordering::Relaxed);
        m.proposals_failed.store(self.node.proposals_failed(), Ordering::Relaxed);
        m.db_total_size_bytes.store(self.node.store().size_bytes(), Ordering::Relaxed);
    }

    /// Carries out the node's outputs until it has none, reporting completed persists to it.
    /// A persist that must sync starts on a blocking thread and returns at once; the node
    /// hears of it when [`join_persist`] completes.
    async fn carry_out_outputs(&mut self) -> Result<(), String> {
        loop {
            let mut persists: Vec<Persist> = Vec::new();
            while let Some(output) = self.node.poll_output() {
                match output {
                    Output::Send(message) => self.outbox.send(message),
                    Output::Persist(p) => persists.push(p),
                    Output::Snapshot { snapshot, log_kept_from } => {
                        let started = std::time::Instant::now();
                        self.storage().await?.save_snapshot(&snapshot, log_kept_from).map_err(|e| e.to_string())?;
                        self.metrics.backend_commit.observe(started.elapsed());
                    }
                    Output::Respond { id, result } => {
                        if let Some(reply) = self.waiting.remove(&id) {
                            let _ = reply.send(result);
                        }
                    }
                }
            }
            if !persists.is_empty() {
                let tokens: Vec<PersistToken> = persists.iter().map(|p| p.token).collect();
                let must_sync = persists.iter().any(|p| p.must_sync || p.snapshot.is_some() || !p.entries.is_empty());
                // A lone request (one entry, nothing queued behind it) has nothing to overlap
                // with: the thread hop would only add to its latency.
                let entries: usize = persists.iter().map(|p| p.entries.len()).sum();
                let overlap = entries > 1 || !self.commands.is_empty();
                if must_sync && overlap {
                    self.storage().await?;
                    let mut storage = self.storage.take().expect("storage() put it back");
                    let metrics = self.metrics.clone();
                    // The simulator runs the closure as one more deterministic task.
                    #[allow(deprecated)]
                    let job = tokio::task::spawn_blocking(move || {
                        let started = std::time::Instant::now();
                        let result = storage.persist(&persists);
                        metrics.wal_fsync.observe(started.elapsed());
                        (storage, tokens, result)
                    });
                    self.persisting = Some(job);
                } else {
                    // Also when only the commit index changed: a plain write into the page
                    // cache, not worth a thread hop (nothing to sync, see `Storage::persist`).
                    let started = std::time::Instant::now();
                    let storage = self.storage().await?;
                    storage.persist(&persists).map_err(|e| format!("cannot persist, stopping: {e}"))?;
                    if must_sync {
                        self.metrics.wal_fsync.observe(started.elapsed());
                    }
                    self.persisted.extend(tokens);
                }
            }
            if self.persisted.is_empty() {
                return Ok(());
            }
            let now = self.clock.now();
            for token in std::mem::take(&mut self.persisted) {
                self.node.handle_persisted(now, token);
            }
        }
    }

    /// The storage, once the persist in flight (if any) is done.
    async fn storage(&mut self) -> Result<&mut S, String> {
        if self.persisting.is_some() {
            let joined = join_persist(&mut self.persisting).await;
            self.persisting = None;
            self.finish_persist(joined)?;
        }
        Ok(self.storage.as_mut().expect("the storage is home when no persist is in flight"))
    }

    /// Takes the storage back from a finished persist and queues its tokens for the node.
    fn finish_persist(&mut self, joined: Result<PersistOutcome<S>, String>) -> Result<(), String> {
        let (storage, tokens, result) = joined?;
        self.storage = Some(storage);
        result.map_err(|e| format!("cannot persist, stopping: {e}"))?;
        self.persisted.extend(tokens);
        Ok(())
    }

    /// Moves watch requests into the hub while it takes them, and responses out to streams
    /// with room. Returns whether some stream has responses waiting that did not fit.
    fn feed_watches(&mut self) -> bool {
        let now = self.clock.now();
        for (&stream, backlog) in self.watch_backlog.iter_mut() {
            while self.node.watch_accepts(stream) {
                let Some(request) = backlog.pop_front() else { break };
                let caller = self.watch_callers.get(&stream).cloned().unwrap_or(detcd_engine::auth::Caller::Internal);
                self.node.watch_request_as(now, stream, &caller, &request);
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

type PersistOutcome<S> = (S, Vec<PersistToken>, Result<(), DiskError>);

/// Waits for the persist in flight; call it only when there is one.
async fn join_persist<S: Send + 'static>(job: &mut Option<PersistJob<S>>) -> Result<PersistOutcome<S>, String> {
    let job = job.as_mut().expect("a persist is in flight");
    // A panic in the storage code: the member cannot know what reached the disk.
    job.await.map_err(|e| format!("persist task failed, stopping: {e}"))
}
