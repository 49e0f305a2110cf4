//! One member's whole state machine, sans IO: raft (raft-rs `RawNode`), the MVCC store, and the
//! requests waiting on them.
//!
//! # Calling contract (quinn-proto's shape)
//!
//! The driver owns the IO. It feeds inputs, each with the member's current monotonic time:
//! [`Node::handle_request`], [`Node::handle_message`], [`Node::handle_persisted`],
//! [`Node::handle_timeout`] (call it when [`Node::poll_timeout`] is reached; calling it early
//! is harmless). After every input it drains [`Node::poll_output`] until `None` and carries the
//! outputs out **in order**:
//!
//! - `Send`: deliver to the peer (best effort);
//! - `Persist`: make durable, then `handle_persisted(token)` — persists complete in token order;
//! - `Snapshot`: write the snapshot atomically (no answer expected);
//! - `Respond`: answer the client.
//!
//! # Durability
//!
//! Nothing is acknowledged before it is durable: raft-rs counts an entry as persisted (for
//! commitment and elections) only once `handle_persisted` says so, committed entries are
//! applied only after the persist carrying the commit index that covers them completed, and
//! messages raft marks as "after persistence" (votes, follower acks) wait for it too.
//!
//! A persist whose `must_sync` is false changes only the commit index, and the driver may skip
//! its sync: the commit index on disk can then lag what was applied. That is safe — and raft-rs
//! #392 ("applied out of range") cannot happen — because a restarted member's applied index is
//! its snapshot's, which the log store lifts the commit index to; everything after it is
//! re-applied from the log. One persist is in flight at a
//! time: while the driver syncs, raft keeps stepping and the next persist grows — group commit.
//!
//! # Determinism
//!
//! All randomness comes from a generator seeded by the caller. raft-rs draws election timeouts
//! from the OS (`thread_rng`); after every call into raft we overwrite its draw with our own
//! (see [`ElectionClock`]), so its value is never used.

mod config;
mod io;
mod reads;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ::raft::{RawNode, ReadState};
use bytes::Bytes;
use detcd_proto::etcdserverpb::AuthenticateResponse;
use detcd_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use detcd_proto::etcdserverpb::{
    request_op, Member, MemberAddResponse, MemberListResponse, MemberPromoteResponse, MemberRemoveResponse,
    MemberUpdateResponse, MoveLeaderResponse, ResponseHeader, TxnRequest,
};
use detcd_proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveResponse, WatchRequest, WatchResponse,
};
use detcd_proto::internalpb::{internal_request, InternalRequest, MemberAttributes, MemberChange, StateImage};
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use config::{Config, Recovered};

/// Active alarms: (member id, `AlarmType` as etcd numbers it), in etcd's order.
type Alarms = BTreeSet<(u64, i32)>;
pub use io::{AuthPassword, Output, Persist, PersistToken, Request, RequestId, Response};
use reads::{PendingRead, Reads};

use crate::auth::{Access, AuthStore, Caller, Who};
use crate::lease::{self, Lessor};
use crate::membership::Membership;
use crate::mvcc::{validate, Store};
use crate::raft::{discard_logger, ConfChangeV2, Entry, EntryType, LogStore, Message, Snapshot, StateRole};
use crate::time::{Duration, Instant};
use crate::watch::{StreamId, WatchHub};
use crate::{limits, Error};
use ::raft::eraftpb::{ConfChangeSingle, ConfChangeType};

/// A client write waiting for its entry to be applied.
#[derive(Debug, Clone, Copy)]
struct PendingWrite {
    id: RequestId,
    deadline: Instant,
    /// Leader changes seen when it was proposed: a timeout after a change is reported as
    /// etcd's "possibly due to previous leader failure".
    leader_changes: u64,
}

/// The persist in flight and what waits for it.
#[derive(Debug)]
struct InFlightPersist {
    token: PersistToken,
    /// Messages raft allows out only after this persist (votes, append acks).
    messages: Vec<Message>,
    /// Committed entries to apply once the commit index covering them is durable.
    committed: Vec<Entry>,
    /// A snapshot from the leader, to install once durable.
    snapshot: Option<Snapshot>,
}

/// The election timeout, drawn by us, deterministically. A new timeout in
/// `[election_ticks, 2 * election_ticks)` is drawn whenever raft's term or role changes or its
/// election clock was reset (a heartbeat, a vote), which is when raft-rs itself would redraw;
/// distinct draws on distinct members are what breaks split votes.
#[derive(Debug)]
struct ElectionClock {
    timeout_ticks: usize,
    term: u64,
    role: StateRole,
    elapsed: usize,
}

pub struct Node {
    config: Config,
    raw: RawNode<LogStore>,
    rng: StdRng,
    store: Store,
    applied_index: u64,
    /// Index of the last snapshot taken or installed.
    snapshot_index: u64,
    now: Instant,
    next_tick: Instant,
    election: ElectionClock,
    outputs: VecDeque<Output>,
    persist: Option<InFlightPersist>,
    /// Proposal id → waiting client. Ids are unique across the cluster (see `next_proposal_id`).
    writes: BTreeMap<u64, PendingWrite>,
    reads: Reads,
    proposal_id_base: u64,
    proposal_seq: u64,
    leader_id: u64,
    leader_changes: u64,
    /// Proposals that failed without an answer from the state machine (timed out, or dropped
    /// by raft for want of a leader): etcd's `proposals_failed_total`.
    proposals_failed: u64,
    membership: Membership,
    /// Active alarms, replicated (etcd's alarm store): (member id, `AlarmType`). While a NOSPACE
    /// is among them, writes that add data are refused when they apply.
    alarms: Alarms,
    /// A MoveLeader in progress: who asked, to whom, until when.
    transfer: Option<(RequestId, u64, Instant)>,
    /// Set once a conf change removing this member is applied: the driver should stop it.
    removed: bool,
    lessor: Lessor,
    watches: WatchHub,
    /// When the primary lessor is next asked for expired leases and due checkpoints.
    lease_check_at: Instant,
    /// Keepalives of leases that expired here and whose revoke is not applied yet: answered
    /// "not found" once it is, "not leader" if this member stops being the primary first (as
    /// etcd's lessor does: it waits for the revoke). Answering "not found" at once would be
    /// wrong: the revoke may never commit (a deposed leader's), and the lease's keys stay
    /// visible until it does. At most [`limits::LEASE_EXPIRED_RENEWALS_WAITING_MAX`] in all.
    expired_renewals: BTreeMap<i64, Vec<RequestId>>,
    /// Users, roles, permissions and simple tokens (replicated but for the tokens' clocks).
    auth: AuthStore,
}

impl Node {
    /// A member starting from what its disk holds (`Recovered::default()` for a new one), with
    /// all its randomness drawn from `seed`.
    pub fn new(config: Config, recovered: Recovered, seed: u64, now: Instant) -> Result<Node, String> {
        if config.id == 0 {
            return Err("member id must not be 0".into());
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let founders = Membership::founding(&config.initial_voters, &config.initial_members);
        let empty_image = encode_image(
            &Store::new(),
            1,
            config.cluster_id,
            &founders,
            &Lessor::new(1),
            &Alarms::new(),
            &AuthStore::default(),
        );
        let bootstrap = LogStore::bootstrap(config.initial_voters.clone(), empty_image);
        let snapshot = recovered.snapshot.filter(|s| s.get_metadata().index > 0);
        let log = LogStore::recover(bootstrap, recovered.hard_state, snapshot, recovered.entries)?;
        let base = log.latest_snapshot();
        let applied_index = base.get_metadata().index;
        let min_ttl_s = lease::min_ttl_s(config.election_ticks as u64, config.heartbeat_interval.as_millis() as u64);
        let (store, membership, lessor, alarms, auth) = if applied_index > 0 {
            decode_image(&base.data, min_ttl_s, config.auth_token_ttl)?
        } else {
            (
                Store::new(),
                Membership::default(),
                Lessor::new(min_ttl_s),
                Alarms::new(),
                AuthStore::new(config.auth_token_ttl),
            )
        };
        let watches = WatchHub::new(now, Duration::from_millis(limits::WATCH_PROGRESS_INTERVAL_MS_DEFAULT), &store);
        let raft_config = ::raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: 1,
            applied: applied_index,
            max_size_per_msg: config.max_size_per_msg_bytes,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            min_election_tick: config.election_ticks,
            max_election_tick: 2 * config.election_ticks,
            read_only_option: ::raft::ReadOnlyOption::Safe,
            ..Default::default()
        };
        raft_config.validate().map_err(|e| format!("raft config: {e}"))?;
        let raw = RawNode::new(&raft_config, log, &discard_logger()).map_err(|e| format!("raft: {e}"))?;
        // Distinct bases make proposal ids unique across members and restarts.
        let proposal_id_base = (config.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFFFF_0000_0000_0000)
            | (rng.gen::<u64>() & 0x0000_FFFF_0000_0000);
        let election = ElectionClock { timeout_ticks: 0, term: u64::MAX, role: StateRole::Follower, elapsed: 0 };
        // A member whose snapshot already holds its own removal will never apply it again (and,
        // out of raft's configuration, never campaigns to hear it from a peer): it knows now.
        let removed = membership.is_removed(config.id);
        let mut node = Node {
            next_tick: now + config.heartbeat_interval,
            config,
            raw,
            rng,
            store,
            applied_index,
            snapshot_index: applied_index,
            now,
            election,
            outputs: VecDeque::new(),
            persist: None,
            writes: BTreeMap::new(),
            expired_renewals: BTreeMap::new(),
            reads: Reads::default(),
            proposal_id_base,
            proposal_seq: 0,
            leader_id: 0,
            leader_changes: 0,
            proposals_failed: 0,
            membership,
            alarms,
            transfer: None,
            removed,
            lessor,
            watches,
            lease_check_at: now,
            auth,
        };
        node.after_raft();
        node.drive();
        Ok(node)
    }

    // ---- inputs ---------------------------------------------------------------------------

    /// A request of the member itself (never checked against auth); see
    /// [`Node::handle_request_as`].
    pub fn handle_request(&mut self, now: Instant, id: RequestId, request: Request) {
        self.handle_request_as(now, id, Caller::Internal, request)
    }

    /// A request from `caller`: while auth is enabled, its token must be known and its user
    /// allowed (etcd's checks: see [`Node::check_permission`]).
    pub fn handle_request_as(&mut self, now: Instant, id: RequestId, caller: Caller, request: Request) {
        self.advance_clock(now);
        if self.removed {
            // See `handle_message`: a removed member stops, and serves nothing meanwhile.
            self.respond(id, Err(Error::Stopped));
            return;
        }
        if let Err(e) = self.accept(id, caller, request) {
            self.respond(id, Err(e));
        }
        self.drive();
    }

    pub fn handle_message(&mut self, now: Instant, message: Message) {
        self.advance_clock(now);
        if self.removed {
            // Once a member applied its own removal, raft-rs has no progress for it, yet a
            // removed leader stays leader (raft-rs leaves stepping down to the application):
            // the next append response made it advance the commit index and unwrap its own,
            // missing progress (sim seed 91, 5 members). etcd stops such a member; so do we,
            // and until the driver has stopped, raft hears nothing more.
            return;
        }
        // Errors here are raft refusing a message (unknown peer, stale term); nothing to do.
        let _ = self.raw.step(message);
        self.after_raft();
        self.drive();
    }

    /// The transport delivered the raft snapshot last sent to member `to`, or gave up on it.
    /// (raft-rs keeps a follower paused in snapshot state until it hears either.)
    pub fn handle_snapshot_status(&mut self, now: Instant, to: u64, delivered: bool) {
        self.advance_clock(now);
        if self.removed {
            return;
        }
        let status = if delivered { ::raft::SnapshotStatus::Finish } else { ::raft::SnapshotStatus::Failure };
        self.raw.report_snapshot(to, status);
        self.after_raft();
        self.drive();
    }

    pub fn handle_persisted(&mut self, now: Instant, token: PersistToken) {
        self.advance_clock(now);
        let persist = self.persist.take().expect("handle_persisted without a persist in flight");
        assert_eq!(persist.token, token, "persists complete in order");
        self.raw.on_persist_ready(token);
        self.outputs.extend(persist.messages.into_iter().map(Output::Send));
        if let Some(snapshot) = persist.snapshot {
            self.install_snapshot(&snapshot);
        }
        for entry in &persist.committed {
            self.apply_entry(entry);
        }
        self.raw.advance_apply_to(self.applied_index);
        self.after_apply();
        self.drive();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.removed {
            return;
        }
        if now >= self.next_tick {
            self.raw.tick();
            self.after_raft();
            // Like a Go ticker, a late clock gets one tick, not a burst: a paused member does
            // not wake up to a flurry of ticks that would start an election at once.
            let interval = self.config.heartbeat_interval;
            self.next_tick = if now - self.next_tick >= interval { now + interval } else { self.next_tick + interval };
        }
        let mut failed = self.reads.expire(now);
        let changes = self.leader_changes;
        self.writes.retain(|_, w| {
            let live = w.deadline > now;
            if !live {
                let e = if w.leader_changes != changes { Error::TimeoutDueToLeaderFail } else { Error::Timeout };
                failed.push((w.id, e));
                self.proposals_failed += 1;
            }
            live
        });
        if self.lessor.is_primary() && now >= self.lease_check_at {
            self.lease_check_at = now + Duration::from_millis(limits::LEASE_EXPIRY_CHECK_INTERVAL_MS);
            for id in self.lessor.expired(now, limits::LEASE_EXPIRED_BATCH_MAX) {
                self.propose_internal(internal_request::Request::LeaseRevoke(LeaseRevokeRequest { id }));
            }
            let checkpoints: Vec<LeaseCheckpoint> = self
                .lessor
                .checkpoints_due(now, limits::LEASE_CHECKPOINT_BATCH_MAX)
                .into_iter()
                .map(|(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl })
                .collect();
            if !checkpoints.is_empty() {
                self.propose_internal(internal_request::Request::LeaseCheckpoint(LeaseCheckpointRequest {
                    checkpoints,
                }));
            }
        }
        if self.watches.next_deadline().is_some_and(|t| t <= now) {
            self.watches.sync(now, &self.store);
        }
        if self.transfer.is_some_and(|(_, _, deadline)| deadline <= now) {
            let (id, _, _) = self.transfer.take().expect("checked");
            failed.push((id, Error::Timeout));
        }
        for (id, e) in failed {
            self.respond(id, Err(e));
        }
        self.drive();
    }

    // ---- outputs --------------------------------------------------------------------------

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When `handle_timeout` has work: the next raft tick, request deadline or read retry.
    pub fn poll_timeout(&self) -> Instant {
        if self.removed {
            // A removed member waits for nothing (see `handle_message`): its driver stops.
            return Instant::NEVER;
        }
        let writes = self.writes.values().map(|w| w.deadline).min();
        let reads = self.reads.next_deadline(self.config.read_index_retry);
        let transfer = self.transfer.map(|(_, _, deadline)| deadline);
        let leases = self
            .lessor
            .is_primary()
            .then(|| self.lessor.next_deadline().map_or(Instant::NEVER, |t| t.max(self.lease_check_at)));
        let watches = self.watches.next_deadline();
        [Some(self.next_tick), writes, reads, transfer, leases, watches]
            .into_iter()
            .flatten()
            .min()
            .expect("next_tick is always set")
    }

    // ---- state ----------------------------------------------------------------------------

    pub fn id(&self) -> u64 {
        self.config.id
    }

    pub fn cluster_id(&self) -> u64 {
        self.config.cluster_id
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this member knows of, 0 for none.
    pub fn leader_id(&self) -> u64 {
        self.raw.raft.leader_id
    }

    /// Index of the last snapshot this member took or installed (0 for none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn voters(&self) -> Vec<u64> {
        self.raw.store().conf_state().voters.clone()
    }

    pub fn learners(&self) -> Vec<u64> {
        self.raw.store().conf_state().learners.clone()
    }

    /// The replicated member list.
    pub fn members(&self) -> Vec<Member> {
        self.membership.list()
    }

    /// Whether the replicated member list is `members` (in id order), without copying it: the
    /// driver asks after every apply.
    pub fn members_are(&self, members: &[Member]) -> bool {
        self.membership.is(members)
    }

    /// Whether `id` is a learner (raft's own view, as [`Node::learners`]).
    pub fn is_learner(&self, id: u64) -> bool {
        self.raw.store().conf_state().learners.contains(&id)
    }

    /// The ids of members removed from the cluster (as of the applied index), ascending.
    pub fn removed_member_ids(&self) -> Vec<u64> {
        self.membership.removed_ids()
    }

    pub fn lessor(&self) -> &Lessor {
        &self.lessor
    }

    /// The applied state as a state image (what Maintenance.Snapshot streams).
    pub fn state_image(&self) -> Vec<u8> {
        encode_image(
            &self.store,
            self.applied_index,
            self.config.cluster_id,
            &self.membership,
            &self.lessor,
            &self.alarms,
            &self.auth,
        )
    }

    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    // ---- watches: streams are the driver's; see `crate::watch` for the contract ------------

    /// Hands a request of watch stream `stream` to the hub. Call only while
    /// [`Node::watch_accepts`] holds for the stream; stop reading the stream otherwise.
    pub fn watch_request(&mut self, now: Instant, stream: StreamId, request: &WatchRequest) {
        self.watch_request_as(now, stream, &Caller::Internal, request)
    }

    /// [`Node::watch_request`] from a client: while auth is enabled a watch is created only if
    /// the stream's user may read its whole range; otherwise it is answered created and
    /// canceled at once, with etcd's reason (etcd's `isWatchPermitted`).
    pub fn watch_request_as(&mut self, now: Instant, stream: StreamId, caller: &Caller, request: &WatchRequest) {
        self.advance_clock(now);
        if let Some(detcd_proto::etcdserverpb::watch_request::RequestUnion::CreateRequest(c)) = &request.request_union {
            let allowed = self
                .auth
                .who(caller, self.now)
                .and_then(|who| self.auth.check_range(&who, &c.key, &c.range_end, Access::Read));
            if allowed.is_err() {
                self.watches.refuse_create(stream, crate::auth::WATCH_PERMISSION_DENIED);
                return;
            }
        }
        self.watches.handle_request(stream, request);
    }

    pub fn watch_accepts(&self, stream: StreamId) -> bool {
        self.watches.accepts_requests(stream)
    }

    /// The watch RPC ended.
    pub fn watch_close(&mut self, stream: StreamId) {
        self.watches.close_stream(stream);
    }

    /// Streams with responses waiting.
    pub fn watch_ready_streams(&self) -> Vec<StreamId> {
        self.watches.ready_streams().collect()
    }

    /// The next response of `stream`, header filled; call when its client can take one.
    pub fn watch_poll(&mut self, stream: StreamId) -> Option<WatchResponse> {
        let mut response = self.watches.poll_response(stream)?;
        let revision = response.header.as_ref().map_or(self.store.current_revision(), |h| h.revision);
        response.header = Some(ResponseHeader {
            cluster_id: self.config.cluster_id,
            member_id: self.config.id,
            revision,
            raft_term: self.raw.raft.term,
        });
        Some(response)
    }

    /// Whether this member was removed from the cluster (the driver should stop it).
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// Proposals made here that failed without an answer from the state machine (timed out,
    /// or dropped by raft for want of a leader), since the member started.
    pub fn proposals_failed(&self) -> u64 {
        self.proposals_failed
    }

    /// Proposals made here still waiting for their entry to apply.
    pub fn proposals_pending(&self) -> usize {
        self.writes.len()
    }

    /// Requests waiting on consensus or a read index.
    pub fn pending_requests(&self) -> usize {
        self.writes.len() + self.reads.len()
    }

    /// Checks the node's own invariants; panics with a description if one is broken.
    pub fn invariants(&self) {
        assert!(
            self.applied_index <= self.commit_index(),
            "applied {} > committed {}",
            self.applied_index,
            self.commit_index()
        );
        assert!(
            self.snapshot_index <= self.applied_index,
            "snapshot {} > applied {}",
            self.snapshot_index,
            self.applied_index
        );
        assert!(self.store.current_revision() >= 1);
        assert!(self.pending_requests() <= limits::PENDING_REQUESTS_MAX);
    }

    // ---- requests -------------------------------------------------------------------------

    fn accept(&mut self, id: RequestId, caller: Caller, request: Request) -> Result<(), Error> {
        let size = match &request {
            Request::Range(r) => r.encoded_len(),
            Request::Put(r) => r.encoded_len(),
            Request::DeleteRange(r) => r.encoded_len(),
            Request::Txn(r) => r.encoded_len(),
            Request::Compact(r) => r.encoded_len(),
            Request::MemberAdd(r) => r.encoded_len(),
            Request::MemberRemove(r) => r.encoded_len(),
            Request::MemberUpdate(r) => r.encoded_len(),
            Request::MemberPromote(r) => r.encoded_len(),
            Request::MemberList(r) => r.encoded_len(),
            Request::MoveLeader(r) => r.encoded_len(),
            Request::LeaseGrant(r) => r.encoded_len(),
            Request::LeaseRevoke(r) => r.encoded_len(),
            Request::LeaseKeepAlive(r) => r.encoded_len(),
            Request::LeaseTimeToLive(r) => r.encoded_len(),
            Request::LeaseLeases(r) => r.encoded_len(),
            Request::PublishAttributes { name, client_urls } => {
                name.len() + client_urls.iter().map(String::len).sum::<usize>()
            }
            Request::Alarm(r) => r.encoded_len(),
            Request::AuthEnable(r) => r.encoded_len(),
            Request::AuthDisable(r) => r.encoded_len(),
            Request::AuthStatus(r) => r.encoded_len(),
            Request::AuthUserAdd(r) => r.encoded_len(),
            Request::AuthUserDelete(r) => r.encoded_len(),
            Request::AuthUserChangePassword(r) => r.encoded_len(),
            Request::AuthUserGrantRole(r) => r.encoded_len(),
            Request::AuthUserRevokeRole(r) => r.encoded_len(),
            Request::AuthUserGet(r) => r.encoded_len(),
            Request::AuthUserList(r) => r.encoded_len(),
            Request::AuthRoleAdd(r) => r.encoded_len(),
            Request::AuthRoleDelete(r) => r.encoded_len(),
            Request::AuthRoleGet(r) => r.encoded_len(),
            Request::AuthRoleList(r) => r.encoded_len(),
            Request::AuthRoleGrantPermission(r) => r.encoded_len(),
            Request::AuthRoleRevokePermission(r) => r.encoded_len(),
            Request::AuthPasswordOf { name } => name.len(),
            Request::Authenticate(r) => r.encoded_len(),
            Request::AuthCheckAdmin => 0,
            Request::AuthCheckRange { key, range_end, .. } => key.len() + range_end.len(),
        };
        if size > self.config.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        if self.pending_requests() >= limits::PENDING_REQUESTS_MAX {
            return Err(Error::TooManyRequests);
        }
        let who = self.auth.who(&caller, self.now)?;
        self.check_permission(&who, &request)?;
        let proposer = match who {
            Who::User(u) => u,
            Who::Anyone | Who::Anonymous => String::new(),
        };
        self.check_quota(&request)?;
        let internal = match request {
            Request::Range(r) if r.serializable => {
                let response = self.store.range(&r)?;
                self.respond(id, Ok(Response::Range(response)));
                return Ok(());
            }
            Request::Range(ref r) => {
                validate::check_range(r)?;
                return self.enqueue_read(id, request);
            }
            Request::Txn(ref t) if txn_is_read_only(t) => {
                validate::check_txn(t, limits::MAX_TXN_OPS)?;
                return self.enqueue_read(id, request);
            }
            Request::Put(r) => {
                validate::check_put(&r)?;
                internal_request::Request::Put(r)
            }
            Request::DeleteRange(r) => {
                validate::check_delete(&r)?;
                internal_request::Request::DeleteRange(r)
            }
            Request::Txn(t) => {
                validate::check_txn(&t, limits::MAX_TXN_OPS)?;
                internal_request::Request::Txn(t)
            }
            Request::Compact(c) => internal_request::Request::Compaction(c),
            Request::MemberUpdate(u) => {
                self.membership.check_update(u.id, &u.peer_ur_ls)?;
                internal_request::Request::MemberUpdate(u)
            }
            Request::LeaseGrant(mut g) => {
                if g.id == 0 {
                    // Positive, like etcd's ids, and not in use here (the apply refuses a clash).
                    g.id = loop {
                        let candidate = (self.rng.gen::<u64>() >> 1) as i64;
                        if candidate != 0 && !self.lessor.leases().contains(&candidate) {
                            break candidate;
                        }
                    };
                }
                internal_request::Request::LeaseGrant(g)
            }
            Request::LeaseRevoke(r) => internal_request::Request::LeaseRevoke(r),
            Request::Alarm(a) => internal_request::Request::Alarm(a),
            Request::AuthEnable(r) => internal_request::Request::AuthEnable(r),
            Request::AuthDisable(r) => internal_request::Request::AuthDisable(r),
            Request::AuthUserAdd(r) => internal_request::Request::AuthUserAdd(r),
            Request::AuthUserDelete(r) => internal_request::Request::AuthUserDelete(r),
            Request::AuthUserChangePassword(r) => internal_request::Request::AuthUserChangePassword(r),
            Request::AuthUserGrantRole(r) => internal_request::Request::AuthUserGrantRole(r),
            Request::AuthUserRevokeRole(r) => internal_request::Request::AuthUserRevokeRole(r),
            Request::AuthUserGet(r) => internal_request::Request::AuthUserGet(r),
            Request::AuthUserList(r) => internal_request::Request::AuthUserList(r),
            Request::AuthRoleAdd(r) => internal_request::Request::AuthRoleAdd(r),
            Request::AuthRoleDelete(r) => internal_request::Request::AuthRoleDelete(r),
            Request::AuthRoleGet(r) => internal_request::Request::AuthRoleGet(r),
            Request::AuthRoleList(r) => internal_request::Request::AuthRoleList(r),
            Request::AuthRoleGrantPermission(r) => internal_request::Request::AuthRoleGrantPermission(r),
            Request::AuthRoleRevokePermission(r) => internal_request::Request::AuthRoleRevokePermission(r),
            Request::Authenticate(t) => internal_request::Request::AuthTokenIssue(t),
            Request::AuthStatus(_) | Request::AuthCheckAdmin | Request::AuthCheckRange { .. } => {
                self.respond(id, Ok(Response::AuthStatus(self.auth.status())));
                return Ok(());
            }
            Request::AuthPasswordOf { name } => {
                let (hash, revision) = self.auth.password_of(&name)?;
                self.respond(id, Ok(Response::AuthPassword(AuthPassword { header: None, hash, revision })));
                return Ok(());
            }
            Request::PublishAttributes { name, client_urls } => {
                internal_request::Request::MemberAttributes(MemberAttributes { id: self.config.id, name, client_urls })
            }
            // Only the primary lessor answers, and only once a quorum confirmed it still leads and
            // it applied what was committed when the request arrived: a read (see
            // `serve_lease_read`).
            Request::LeaseKeepAlive(_) | Request::LeaseTimeToLive(_) => {
                if !self.lessor.is_primary() {
                    return Err(Error::NotLeader);
                }
                return self.enqueue_read(id, request);
            }
            Request::LeaseLeases(_) => {
                let leases = self.lessor.leases().into_iter().map(|id| LeaseStatus { id }).collect();
                self.respond(id, Ok(Response::LeaseLeases(LeaseLeasesResponse { header: None, leases })));
                return Ok(());
            }
            Request::MemberList(ref l) if l.linearizable => return self.enqueue_read(id, request),
            Request::MemberList(_) => {
                let members = self.membership.list();
                self.respond(id, Ok(Response::MemberList(MemberListResponse { header: None, members })));
                return Ok(());
            }
            Request::MemberAdd(a) => {
                self.membership.check_add(&a.peer_ur_ls, a.is_learner, limits::MAX_LEARNERS_DEFAULT)?;
                let member_id = loop {
                    let candidate = self.rng.gen::<u64>();
                    // A removed member's id is never given again: its old data dir (or its
                    // peers' memory of it) must never pass for the new member.
                    let taken = self.membership.get(candidate).is_some() || self.membership.is_removed(candidate);
                    if candidate != 0 && !taken {
                        break candidate;
                    }
                };
                let member =
                    Member { id: member_id, peer_ur_ls: a.peer_ur_ls, is_learner: a.is_learner, ..Default::default() };
                let kind = if a.is_learner { ConfChangeType::AddLearnerNode } else { ConfChangeType::AddNode };
                return self.propose_conf_change(id, kind, member);
            }
            Request::MemberRemove(r) => {
                let member = self.membership.get(r.id).cloned().ok_or(Error::MemberNotFound)?;
                return self.propose_conf_change(id, ConfChangeType::RemoveNode, member);
            }
            Request::MemberPromote(p) => {
                let member = self.membership.get(p.id).cloned().ok_or(Error::MemberNotFound)?;
                if !member.is_learner {
                    return Err(Error::MemberNotLearner);
                }
                if !self.is_leader() {
                    return Err(Error::NotLeader);
                }
                let learner_match = self.raw.raft.prs().get(p.id).map_or(0, |pr| pr.matched);
                let leader_match = self.raw.raft.raft_log.last_index();
                if learner_match * 100 < leader_match * limits::LEARNER_READY_PERCENT {
                    return Err(Error::LearnerNotReady);
                }
                return self.propose_conf_change(id, ConfChangeType::AddNode, Member { is_learner: false, ..member });
            }
            Request::MoveLeader(m) => {
                if !self.is_leader() {
                    return Err(Error::NotLeader);
                }
                if m.target_id == self.config.id {
                    self.respond(id, Ok(Response::MoveLeader(MoveLeaderResponse { header: None })));
                    return Ok(());
                }
                if !self.voters().contains(&m.target_id) {
                    return Err(Error::BadLeaderTransferee);
                }
                if let Some((previous, _, _)) = self.transfer.take() {
                    self.respond(previous, Err(Error::LeaderChanged));
                }
                self.transfer = Some((id, m.target_id, self.now + self.config.request_timeout));
                self.raw.transfer_leader(m.target_id);
                self.after_raft();
                return Ok(());
            }
        };
        self.propose(id, internal, proposer)
    }

    /// etcd's permission checks for a client request: KV reads and writes against the user's
    /// key ranges (txns op by op), a lease revoke — or a put attaching a lease — against the
    /// lease's keys, membership changes, leader moves and auth management against the root
    /// role. Lease grant, keepalive and time-to-live, member list, alarms, status and
    /// compaction need no permission (as in etcd 3.4), only a valid token if one is sent.
    fn check_permission(&self, who: &Who, request: &Request) -> Result<(), Error> {
        let auth = &self.auth;
        match request {
            Request::Range(r) => auth.check_range(who, &r.key, &r.range_end, Access::Read),
            Request::Put(p) => {
                auth.check_put(who, p)?;
                self.check_lease_keys(who, p.lease)
            }
            Request::DeleteRange(d) => auth.check_delete(who, d),
            Request::Txn(t) => auth.check_txn(who, t),
            Request::LeaseRevoke(r) => self.check_lease_keys(who, r.id),
            Request::MemberAdd(_)
            | Request::MemberRemove(_)
            | Request::MemberUpdate(_)
            | Request::MemberPromote(_)
            | Request::MoveLeader(_)
            | Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::AuthUserAdd(_)
            | Request::AuthUserDelete(_)
            | Request::AuthUserChangePassword(_)
            | Request::AuthUserGrantRole(_)
            | Request::AuthUserRevokeRole(_)
            | Request::AuthUserGet(_)
            | Request::AuthUserList(_)
            | Request::AuthRoleAdd(_)
            | Request::AuthRoleDelete(_)
            | Request::AuthRoleGet(_)
            | Request::AuthRoleList(_)
            | Request::AuthRoleGrantPermission(_)
            | Request::AuthRoleRevokePermission(_)
            | Request::AuthCheckAdmin => auth.check_admin(who),
            Request::AuthCheckRange { key, range_end, write } => {
                auth.check_range(who, key, range_end, Access::Read)?;
                if *write {
                    auth.check_range(who, key, range_end, Access::Write)?;
                }
                Ok(())
            }
            Request::Compact(_)
            | Request::MemberList(_)
            | Request::LeaseGrant(_)
            | Request::LeaseKeepAlive(_)
            | Request::LeaseTimeToLive(_)
            | Request::LeaseLeases(_)
            | Request::PublishAttributes { .. }
            | Request::Alarm(_)
            | Request::AuthStatus(_)
            | Request::AuthPasswordOf { .. }
            | Request::Authenticate(_) => Ok(()),
        }
    }

    fn check_lease_keys(&self, who: &Who, lease: i64) -> Result<(), Error> {
        if lease == 0 || matches!(who, Who::Anyone) {
            return Ok(());
        }
        let keys = self.lessor.keys_of(lease);
        self.auth.check_lease_keys(who, keys.iter().map(|k| k.as_ref()))
    }

    /// The permission check of a write again when it applies, for the user who proposed it
    /// (etcd's authApplierV3): the auth state may have changed since (then, as in etcd, the
    /// write fails with "revision of auth store is old").
    ///
    /// Difference from etcd: an entry proposed without a user (auth disabled, or not yet
    /// applied on the member that admitted it, or the member's own lease revokes and the
    /// Lock/Election services' writes) is not checked when it applies; etcd refuses such a
    /// write with "user name is empty" if auth got enabled in between. Marking client entries
    /// would change every entry's bytes; the window is one commit of `auth enable`.
    fn recheck_permission(
        &self,
        request: &Option<internal_request::Request>,
        username: &str,
        auth_revision: u64,
    ) -> Result<(), Error> {
        use internal_request::Request as R;
        if username.is_empty() || !self.auth.is_enabled() {
            return Ok(());
        }
        if auth_revision < self.auth.revision() {
            return Err(Error::AuthOldRevision);
        }
        let who = Who::User(username.to_owned());
        match request {
            Some(R::Put(p)) => {
                self.auth.check_put(&who, p)?;
                self.check_lease_keys(&who, p.lease)
            }
            Some(R::DeleteRange(d)) => self.auth.check_delete(&who, d),
            Some(R::Txn(t)) => self.auth.check_txn(&who, t),
            Some(R::LeaseRevoke(r)) => self.check_lease_keys(&who, r.id),
            Some(R::MemberUpdate(_))
            | Some(R::AuthEnable(_))
            | Some(R::AuthDisable(_))
            | Some(R::AuthUserAdd(_))
            | Some(R::AuthUserDelete(_))
            | Some(R::AuthUserChangePassword(_))
            | Some(R::AuthUserGrantRole(_))
            | Some(R::AuthUserRevokeRole(_))
            | Some(R::AuthUserGet(_))
            | Some(R::AuthUserList(_))
            | Some(R::AuthRoleAdd(_))
            | Some(R::AuthRoleDelete(_))
            | Some(R::AuthRoleGet(_))
            | Some(R::AuthRoleList(_))
            | Some(R::AuthRoleGrantPermission(_))
            | Some(R::AuthRoleRevokePermission(_)) => self.auth.check_admin(&who),
            _ => Ok(()),
        }
    }

    /// etcd's quota check at admission (`quotaKVServer` / `quotaLeaseServer`): a request that
    /// would add data (a put, a txn that may put, a lease grant) and would take the store past
    /// `--quota-backend-bytes` is refused with NOSPACE, and this member raises the NOSPACE alarm
    /// through raft (once: not while it is already raised for this member). Every other request
    /// passes: deletes, compactions and revokes are how a cluster gets out of it.
    fn check_quota(&mut self, request: &Request) -> Result<(), Error> {
        let cost_bytes = match request {
            // etcd's costPut / costTxn / leaseOverhead: key, value and a fixed overhead.
            Request::Put(p) => (p.key.len() + p.value.len()) as u64 + limits::QUOTA_PUT_OVERHEAD_BYTES,
            Request::Txn(t) => txn_put_cost_bytes(t),
            Request::LeaseGrant(_) => limits::QUOTA_LEASE_OVERHEAD_BYTES,
            _ => 0,
        };
        if cost_bytes == 0 || self.store.size_bytes() + cost_bytes <= self.config.quota_backend_bytes {
            return Ok(());
        }
        let nospace = AlarmType::Nospace as i32;
        if !self.alarms.contains(&(self.config.id, nospace)) && self.leader_id() != 0 {
            let raise =
                AlarmRequest { action: AlarmAction::Activate as i32, member_id: self.config.id, alarm: nospace };
            self.propose_internal(internal_request::Request::Alarm(raise));
        }
        Err(Error::NoSpace)
    }

    /// The active alarms, in etcd's order (member id, then type).
    pub fn alarms(&self) -> Vec<AlarmMember> {
        self.alarms.iter().map(|&(member_id, alarm)| AlarmMember { member_id, alarm }).collect()
    }

    /// Proposes a request of the member's own (a lease revoke or checkpoint), with no client
    /// waiting; if it is lost, the lessor hands it out again later.
    fn propose_internal(&mut self, request: internal_request::Request) {
        let proposal_id = self.next_proposal_id();
        let data = InternalRequest { id: proposal_id, request: Some(request), ..Default::default() }.encode_to_vec();
        let _ = self.raw.propose(Vec::new(), data);
        self.after_raft();
    }

    /// Proposes a membership change; the member's details travel in the change's context.
    fn propose_conf_change(&mut self, id: RequestId, kind: ConfChangeType, member: Member) -> Result<(), Error> {
        if self.leader_id() == 0 {
            return Err(Error::NoLeader);
        }
        // raft-rs keeps one conf change in flight and silently turns a second into an empty
        // entry; refuse it up front where we can see it (on the leader) instead.
        if self.is_leader() && self.raw.raft.has_pending_conf() {
            return Err(Error::TooManyRequests);
        }
        let proposal_id = self.next_proposal_id();
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = member.id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        // The member travels inside the change itself (raft-rs also copies the context into the
        // entry, but the change is what every member decodes when it applies).
        let context = MemberChange { id: proposal_id, member: Some(member) }.encode_to_vec();
        cc.context = context.clone().into();
        let proposed = self.raw.propose_conf_change(context, cc);
        self.await_proposal(id, proposal_id, proposed)
    }

    /// A proposal raft took waits for its entry; one raft dropped (no leader to forward to, or a
    /// leadership transfer under way) fails at once with `NoLeader`.
    fn await_proposal(&mut self, id: RequestId, proposal_id: u64, proposed: ::raft::Result<()>) -> Result<(), Error> {
        self.after_raft();
        if proposed.is_err() {
            self.proposals_failed += 1;
            return Err(Error::NoLeader);
        }
        let deadline = self.now + self.config.request_timeout;
        self.writes.insert(proposal_id, PendingWrite { id, deadline, leader_changes: self.leader_changes });
        Ok(())
    }

    /// A cluster-wide unique id for the next proposal (see `proposal_id_base`).
    fn next_proposal_id(&mut self) -> u64 {
        self.proposal_seq += 1;
        self.proposal_id_base.wrapping_add(self.proposal_seq)
    }

    fn enqueue_read(&mut self, id: RequestId, request: Request) -> Result<(), Error> {
        if self.leader_id() == 0 {
            return Err(Error::NoLeader);
        }
        let deadline = self.now + self.config.request_timeout;
        #[cfg(feature = "canary")]
        if crate::canary::on(crate::canary::Canary::StaleRead) && self.is_leader() {
            self.serve_read(PendingRead { id, request, deadline });
            return Ok(());
        }
        self.reads.enqueue(PendingRead { id, request, deadline });
        Ok(())
    }

    /// `username` (empty unless auth is enabled) goes with the entry: the apply checks the
    /// permission again, as etcd's authApplierV3 does.
    fn propose(&mut self, id: RequestId, request: internal_request::Request, username: String) -> Result<(), Error> {
        if self.leader_id() == 0 {
            return Err(Error::NoLeader);
        }
        let proposal_id = self.next_proposal_id();
        let auth_revision = if username.is_empty() { 0 } else { self.auth.revision() };
        let data = InternalRequest { id: proposal_id, request: Some(request), username, auth_revision }.encode_to_vec();
        let proposed = self.raw.propose(Vec::new(), data);
        self.await_proposal(id, proposal_id, proposed)
    }

    fn respond(&mut self, id: RequestId, result: Result<Response, Error>) {
        let result = result.map(|r| self.with_header(r));
        self.outputs.push_back(Output::Respond { id, result });
    }

    /// Fills the header as etcd does: cluster and member ids and the raft term around the
    /// revision the store put there (the current revision where it put none).
    fn with_header(&self, mut response: Response) -> Response {
        let header = response.header_mut();
        let revision = header.as_ref().map_or(self.store.current_revision(), |h| h.revision);
        *header = Some(ResponseHeader {
            cluster_id: self.config.cluster_id,
            member_id: self.config.id,
            revision,
            raft_term: self.raw.raft.term,
        });
        response
    }

    fn serve_read(&mut self, read: PendingRead) {
        let result = match read.request {
            Request::LeaseKeepAlive(_) | Request::LeaseTimeToLive(_) => return self.serve_lease_read(read),
            _ => self.read_result(&read.request),
        };
        self.respond(read.id, result);
    }

    /// A keepalive or time-to-live whose read round confirmed this member's leadership (a
    /// deposed leader that has not heard of its successor — paused, or cut off — must not
    /// answer from its stale lessor: etcd #15247, fixed by etcd's `ensureLeadership`), and
    /// which came after this member applied what was committed when the request arrived (a
    /// leader may apply after a follower that already answered a grant: etcd 3.5's
    /// `waitAppliedIndex`). Found by detcd-sim: a paused, deposed leader answered "not found"
    /// for a lease granted after it lost its leadership.
    fn serve_lease_read(&mut self, read: PendingRead) {
        let id = read.id;
        if !self.lessor.is_primary() {
            return self.respond(id, Err(Error::NotLeader));
        }
        match read.request {
            Request::LeaseKeepAlive(k) => {
                if self.lessor.is_expired(k.id, self.now) {
                    let waiting: usize = self.expired_renewals.values().map(Vec::len).sum();
                    if waiting >= limits::LEASE_EXPIRED_RENEWALS_WAITING_MAX {
                        // The client retries; nothing was renewed.
                        return self.respond(id, Err(Error::TooManyRequests));
                    }
                    self.expired_renewals.entry(k.id).or_default().push(id);
                    return;
                }
                let result = self
                    .lessor
                    .renew(k.id, self.now)
                    .map(|ttl| Response::LeaseKeepAlive(LeaseKeepAliveResponse { header: None, id: k.id, ttl }));
                self.respond(id, result);
            }
            Request::LeaseTimeToLive(t) => {
                let result = self.lessor.time_to_live(t.id, self.now).ok_or(Error::LeaseNotFound).map(|ttl| {
                    Response::LeaseTimeToLive(LeaseTimeToLiveResponse {
                        header: None,
                        id: t.id,
                        ttl: ttl.remaining_ttl_s,
                        granted_ttl: ttl.granted_ttl_s,
                        keys: if t.keys { ttl.keys } else { Vec::new() },
                    })
                });
                self.respond(id, result);
            }
            other => unreachable!("only lease requests are served as lease reads: {other:?}"),
        }
    }

    fn read_result(&mut self, request: &Request) -> Result<Response, Error> {
        match request {
            Request::Range(r) => self.store.range(r).map(Response::Range),
            // A txn without writes writes nothing: the store leaves its revision alone.
            Request::Txn(t) => self.store.txn(t, &self.lessor).map(|a| Response::Txn(a.response)),
            Request::MemberList(_) => {
                Ok(Response::MemberList(MemberListResponse { header: None, members: self.membership.list() }))
            }
            other => unreachable!("only reads are queued as reads: {other:?}"),
        }
    }

    // ---- raft -----------------------------------------------------------------------------

    fn advance_clock(&mut self, now: Instant) {
        // The member's clock is monotonic by contract; a driver bug must not move us back.
        self.now = self.now.max(now);
    }

    /// After every call into raft: replace raft-rs's OS-random election timeout with ours, and
    /// notice leader changes.
    fn after_raft(&mut self) {
        let raft = &mut self.raw.raft;
        let clock = &mut self.election;
        if raft.term != clock.term || raft.state != clock.role || raft.election_elapsed < clock.elapsed {
            clock.timeout_ticks = self.rng.gen_range(self.config.election_ticks..2 * self.config.election_ticks);
        }
        clock.term = raft.term;
        clock.role = raft.state;
        clock.elapsed = raft.election_elapsed;
        raft.set_randomized_election_timeout(clock.timeout_ticks);

        if raft.leader_id != self.leader_id {
            let had_leader = self.leader_id != 0;
            self.leader_id = raft.leader_id;
            self.leader_changes += 1;
            if had_leader {
                for (id, e) in self.reads.fail_round() {
                    self.respond(id, Err(e));
                }
            }
            if let Some((id, target, _)) = self.transfer {
                if self.leader_id == target {
                    self.transfer = None;
                    self.respond(id, Ok(Response::MoveLeader(MoveLeaderResponse { header: None })));
                }
            }
        }
        if self.lessor.is_primary() && !self.is_leader() {
            self.lessor.demote();
            self.fail_expired_renewals();
        }
        if self.raw.store().take_fresh_snapshot_wanted() && self.applied_index > self.snapshot_index {
            self.take_snapshot();
        }
    }

    /// Issues a read round if due, then moves raft's readies out: at most one persist in
    /// flight; a ready with nothing to persist is completed on the spot.
    fn drive(&mut self) {
        if self.leader_id() != 0 {
            let term_committed = self.raw.raft.commit_to_current_term();
            if let Some(ctx) = self.reads.round_to_issue(self.now, self.config.read_index_retry, term_committed) {
                self.raw.read_index(ctx);
                self.after_raft();
            }
        }
        while self.persist.is_none() && self.raw.has_ready() {
            let mut ready = self.raw.ready();
            self.outputs.extend(ready.take_messages().into_iter().map(Output::Send));
            for ReadState { index, request_ctx } in ready.take_read_states() {
                self.reads.on_read_state(&request_ctx, index);
            }
            let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
            if let Some(s) = &snapshot {
                self.raw.mut_store().apply_snapshot(s.clone());
            }
            let entries = ready.take_entries();
            self.raw.mut_store().append(&entries);
            let hard_state = ready.hs().cloned();
            if let Some(hs) = &hard_state {
                self.raw.mut_store().set_hard_state(hs.clone());
            }
            let token = ready.number();
            let must_sync = ready.must_sync();
            let in_flight = InFlightPersist {
                token,
                messages: ready.take_persisted_messages(),
                committed: ready.take_committed_entries(),
                snapshot: snapshot.clone(),
            };
            self.raw.advance_append_async(ready);
            if snapshot.is_some() || !entries.is_empty() || hard_state.is_some() {
                self.outputs.push_back(Output::Persist(Persist { token, snapshot, entries, hard_state, must_sync }));
                self.persist = Some(in_flight);
            } else {
                // Nothing to make durable: the commit index covering these entries is on disk
                // already (it came with an earlier, completed persist).
                self.raw.on_persist_ready(token);
                self.outputs.extend(in_flight.messages.into_iter().map(Output::Send));
                for entry in &in_flight.committed {
                    self.apply_entry(entry);
                }
                self.raw.advance_apply_to(self.applied_index);
                self.after_apply();
            }
            self.after_raft();
        }
    }

    // ---- apply ----------------------------------------------------------------------------

    fn apply_entry(&mut self, entry: &Entry) {
        if entry.index <= self.applied_index {
            // Replayed after a restart from an image that already holds it: never twice.
            return;
        }
        assert_eq!(entry.index, self.applied_index + 1, "entries apply in order, without gaps");
        match entry.get_entry_type() {
            EntryType::EntryNormal if entry.data.is_empty() => {} // a new leader's empty entry
            EntryType::EntryNormal => {
                let request = InternalRequest::decode(&entry.data[..])
                    .unwrap_or_else(|e| panic!("committed entry {} does not decode: {e}", entry.index));
                let result = match self.recheck_permission(&request.request, &request.username, request.auth_revision) {
                    Ok(()) => self.apply_request(request.request, entry.index),
                    Err(e) => Err(e),
                };
                if let Some(waiting) = self.writes.remove(&request.id) {
                    self.respond(waiting.id, result);
                }
            }
            EntryType::EntryConfChange => {
                let cc: ::raft::eraftpb::ConfChange = protobuf::Message::parse_from_bytes(&entry.data)
                    .unwrap_or_else(|e| panic!("conf change {} does not decode: {e}", entry.index));
                // A v1 change is one single change (raft-proto's `into_v2`, not exported).
                let mut single = ::raft::eraftpb::ConfChangeSingle::default();
                single.set_change_type(cc.get_change_type());
                single.node_id = cc.node_id;
                let mut v2 = ConfChangeV2::default();
                v2.mut_changes().push(single);
                v2.context = cc.context;
                self.apply_conf_change(v2);
            }
            EntryType::EntryConfChangeV2 => {
                let cc: ConfChangeV2 = protobuf::Message::parse_from_bytes(&entry.data)
                    .unwrap_or_else(|e| panic!("conf change {} does not decode: {e}", entry.index));
                self.apply_conf_change(cc);
            }
        }
        self.applied_index = entry.index;
    }

    /// A membership change: raft's conf state first, then our member list, then the answer.
    fn apply_conf_change(&mut self, cc: ConfChangeV2) {
        let change = MemberChange::decode(&cc.context[..]).unwrap_or_default();
        if let Err(e) = self.validate_conf_change(&cc, &change) {
            // Refused alike on every member; raft's configuration stays as it was.
            if let Some(waiting) = self.writes.remove(&change.id) {
                self.respond(waiting.id, Err(e));
            }
            return;
        }
        let result = match self.raw.apply_conf_change(&cc) {
            Ok(conf_state) => {
                self.raw.mut_store().set_conf_state(conf_state);
                let mut promoted = false;
                for single in cc.get_changes() {
                    let id = single.node_id;
                    let member =
                        change.member.clone().filter(|m| m.id == id).unwrap_or(Member { id, ..Default::default() });
                    match single.get_change_type() {
                        ConfChangeType::AddNode if self.membership.get(id).is_some_and(|m| m.is_learner) => {
                            self.membership.promote(id);
                            promoted = true;
                        }
                        ConfChangeType::AddNode => self.membership.add(Member { is_learner: false, ..member }),
                        ConfChangeType::AddLearnerNode => self.membership.add(Member { is_learner: true, ..member }),
                        ConfChangeType::RemoveNode => {
                            self.membership.remove(id);
                            self.removed |= id == self.config.id;
                        }
                    }
                }
                let members = self.membership.list();
                let kind = cc.get_changes().first().map(|c| c.get_change_type());
                Ok(match kind {
                    Some(ConfChangeType::RemoveNode) => {
                        Response::MemberRemove(MemberRemoveResponse { header: None, members })
                    }
                    _ if promoted => Response::MemberPromote(MemberPromoteResponse { header: None, members }),
                    _ => {
                        Response::MemberAdd(MemberAddResponse { header: None, member: change.member.clone(), members })
                    }
                })
            }
            // raft refuses an invalid change identically on every member; nothing changes.
            Err(_) => Err(Error::MemberNotEnoughStarted),
        };
        if let Some(waiting) = self.writes.remove(&change.id) {
            self.respond(waiting.id, result);
        }
    }

    /// etcd's `ValidateConfigurationChange`, at apply time: a change checked when it was
    /// proposed may no longer fit once the log reaches it. Two additions of one peer URL
    /// proposed through two members before either applied (an operator retrying a MemberAdd
    /// that timed out) made two members with one URL, and the joiner could never start (found
    /// by detcd-sim, lease-only seed 17). Deterministic: it reads only the applied member list.
    fn validate_conf_change(&self, cc: &ConfChangeV2, change: &MemberChange) -> Result<(), Error> {
        for single in cc.get_changes() {
            let id = single.node_id;
            let existing = self.membership.get(id);
            match single.get_change_type() {
                ConfChangeType::AddNode if existing.is_some_and(|m| m.is_learner) => {}
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    if self.membership.is_removed(id) {
                        return Err(Error::MemberNotFound);
                    }
                    if existing.is_some() {
                        return Err(Error::MemberExists);
                    }
                    let urls = change.member.as_ref().filter(|m| m.id == id).map_or(&[][..], |m| &m.peer_ur_ls[..]);
                    if self.membership.list().iter().any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u))) {
                        return Err(Error::PeerUrlExists);
                    }
                }
                ConfChangeType::RemoveNode if existing.is_none() => return Err(Error::MemberNotFound),
                ConfChangeType::RemoveNode => {}
            }
        }
        Ok(())
    }

    /// One replicated request. Deterministic: every member computes the same result (the
    /// lessor's clocks, which differ, only matter on the leader and never change the result).
    fn apply_request(&mut self, request: Option<internal_request::Request>, index: u64) -> Result<Response, Error> {
        use internal_request::Request as R;
        // etcd's applierV3Capped: while a NOSPACE alarm is raised, nothing that adds data
        // applies — on every member alike, since the alarms are replicated state.
        let adds_data = match &request {
            Some(R::Put(_)) | Some(R::LeaseGrant(_)) => true,
            Some(R::Txn(t)) => txn_put_cost_bytes(t) > 0,
            _ => false,
        };
        if adds_data && self.alarms.iter().any(|&(_, alarm)| alarm == AlarmType::Nospace as i32) {
            return Err(Error::NoSpace);
        }
        match request {
            Some(R::Put(p)) => {
                let applied = self.store.put(&p, &self.lessor)?;
                self.after_write(&applied.events);
                Ok(Response::Put(applied.response))
            }
            Some(R::DeleteRange(d)) => {
                let applied = self.store.delete_range(&d)?;
                self.after_write(&applied.events);
                Ok(Response::DeleteRange(applied.response))
            }
            Some(R::Txn(t)) => {
                let applied = self.store.txn(&t, &self.lessor)?;
                self.after_write(&applied.events);
                Ok(Response::Txn(applied.response))
            }
            Some(R::Compaction(c)) => self.store.compact(&c).map(Response::Compact),
            Some(R::MemberUpdate(u)) => {
                if self.membership.get(u.id).is_none() {
                    return Err(Error::MemberNotFound);
                }
                self.membership.update_peer_urls(u.id, u.peer_ur_ls);
                Ok(Response::MemberUpdate(MemberUpdateResponse { header: None, members: self.membership.list() }))
            }
            Some(R::MemberAttributes(a)) => {
                if self.membership.get(a.id).is_none() {
                    return Err(Error::MemberNotFound);
                }
                self.membership.set_attributes(a.id, a.name, a.client_urls);
                Ok(Response::MemberList(MemberListResponse { header: None, members: self.membership.list() }))
            }
            Some(R::LeaseGrant(g)) => {
                let granted = self.lessor.grant(g.id, g.ttl, self.now)?;
                Ok(Response::LeaseGrant(LeaseGrantResponse {
                    header: None,
                    id: granted.id,
                    ttl: granted.ttl_s,
                    error: String::new(),
                }))
            }
            Some(R::LeaseRevoke(r)) => {
                // Revoked now, or already gone: either way the keepalives that found it expired
                // get their answer.
                for waiting in self.expired_renewals.remove(&r.id).unwrap_or_default() {
                    self.respond(waiting, Err(Error::LeaseNotFound));
                }
                let keys = self.lessor.revoke(r.id)?;
                let applied = self.store.delete_keys(&keys);
                self.after_write(&applied.events);
                Ok(Response::LeaseRevoke(LeaseRevokeResponse { header: None }))
            }
            Some(R::LeaseCheckpoint(c)) => {
                for checkpoint in c.checkpoints {
                    self.lessor.checkpoint(checkpoint.id, checkpoint.remaining_ttl);
                }
                // Proposed by the member itself: no client waits for this answer.
                Err(Error::NotCapable)
            }
            Some(R::Alarm(a)) => Ok(Response::Alarm(self.apply_alarm(&a))),
            Some(R::AuthEnable(_)) => self.auth.enable().map(Response::AuthEnable),
            Some(R::AuthDisable(_)) => Ok(Response::AuthDisable(self.auth.disable())),
            Some(R::AuthUserAdd(r)) => self.auth.user_add(&r).map(Response::AuthUserAdd),
            Some(R::AuthUserDelete(r)) => self.auth.user_delete(&r).map(Response::AuthUserDelete),
            Some(R::AuthUserChangePassword(r)) => {
                self.auth.user_change_password(&r).map(Response::AuthUserChangePassword)
            }
            Some(R::AuthUserGrantRole(r)) => self.auth.user_grant_role(&r).map(Response::AuthUserGrantRole),
            Some(R::AuthUserRevokeRole(r)) => self.auth.user_revoke_role(&r).map(Response::AuthUserRevokeRole),
            Some(R::AuthUserGet(r)) => self.auth.user_get(&r).map(Response::AuthUserGet),
            Some(R::AuthUserList(_)) => Ok(Response::AuthUserList(self.auth.user_list())),
            Some(R::AuthRoleAdd(r)) => self.auth.role_add(&r).map(Response::AuthRoleAdd),
            Some(R::AuthRoleDelete(r)) => self.auth.role_delete(&r).map(Response::AuthRoleDelete),
            Some(R::AuthRoleGet(r)) => self.auth.role_get(&r).map(Response::AuthRoleGet),
            Some(R::AuthRoleList(_)) => Ok(Response::AuthRoleList(self.auth.role_list())),
            Some(R::AuthRoleGrantPermission(r)) => {
                self.auth.role_grant_permission(&r).map(Response::AuthRoleGrantPermission)
            }
            Some(R::AuthRoleRevokePermission(r)) => {
                self.auth.role_revoke_permission(&r).map(Response::AuthRoleRevokePermission)
            }
            Some(R::AuthTokenIssue(t)) => {
                let token = self.auth.issue_token(&t.name, &t.token, t.auth_revision, index, self.now)?;
                Ok(Response::Authenticate(AuthenticateResponse { header: None, token }))
            }
            None => Err(Error::NotCapable),
        }
    }

    /// etcd's `applyAlarm`: GET lists the alarms (of one type, or all for NONE); ACTIVATE and
    /// DEACTIVATE answer with the alarm they changed, nothing if it was already so.
    fn apply_alarm(&mut self, a: &AlarmRequest) -> AlarmResponse {
        let alarm = (a.member_id, a.alarm);
        let alarms = match a.action() {
            AlarmAction::Get => self
                .alarms
                .iter()
                .filter(|&&(_, t)| a.alarm == AlarmType::None as i32 || t == a.alarm)
                .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
                .collect(),
            AlarmAction::Activate if a.alarm != AlarmType::None as i32 && self.alarms.insert(alarm) => {
                vec![AlarmMember { member_id: a.member_id, alarm: a.alarm }]
            }
            AlarmAction::Deactivate if self.alarms.remove(&alarm) => {
                vec![AlarmMember { member_id: a.member_id, alarm: a.alarm }]
            }
            AlarmAction::Activate | AlarmAction::Deactivate => Vec::new(),
        };
        AlarmResponse { header: None, alarms }
    }

    /// Every store write's events go to the lessor (key attachments) and to the watchers.
    fn after_write(&mut self, events: &[detcd_proto::mvccpb::Event]) {
        if events.is_empty() {
            return;
        }
        self.lessor.apply_events(events);
        self.watches.notify(events, self.store.current_revision());
    }

    /// After entries were applied: serve the reads they unblocked, take a snapshot if due.
    fn after_apply(&mut self) {
        // A new leader starts its lease clocks once it has applied an entry of its own term:
        // from then on its view of the leases is complete. Every lease gets its remaining TTL
        // plus an election timeout, so an election never expires leases en masse.
        if self.is_leader() && !self.lessor.is_primary() {
            let applied_term = self.raw.store().term_of(self.applied_index);
            if applied_term == Some(self.term()) {
                let election_timeout = self.config.heartbeat_interval * self.config.election_ticks as u32;
                self.lessor.promote(self.now, election_timeout);
                self.lease_check_at = self.now;
            }
        }
        for read in self.reads.take_servable(self.applied_index) {
            self.serve_read(read);
        }
        if self.applied_index >= self.snapshot_index + self.config.snapshot_count {
            self.take_snapshot();
        }
    }

    /// This member's lessor is no longer the primary: the keepalives waiting for the revoke of
    /// an expired lease get "not leader" (the client retries at the new leader), as in etcd.
    fn fail_expired_renewals(&mut self) {
        for waiting in std::mem::take(&mut self.expired_renewals).into_values().flatten() {
            self.respond(waiting, Err(Error::NotLeader));
        }
    }

    fn take_snapshot(&mut self) {
        let index = self.applied_index;
        let log = self.raw.store();
        let image = encode_image(
            &self.store,
            index,
            self.config.cluster_id,
            &self.membership,
            &self.lessor,
            &self.alarms,
            &self.auth,
        );
        // The canary labels the image with the index before the last entry it holds (when that
        // entry is an ordinary request, which can apply twice without tripping raft).
        #[cfg(feature = "canary")]
        let index = if crate::canary::on(crate::canary::Canary::DoubleApply)
            && index > self.snapshot_index + 1
            && log
                .entries_between(index, index + 1)
                .first()
                .is_some_and(|e| e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty())
        {
            index - 1
        } else {
            index
        };
        let term = log.term_of(index).expect("the applied entry is in the log");
        let mut snapshot = Snapshot::default();
        snapshot.data = Bytes::from(image);
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(log.conf_state().clone());
        let log_kept_from = index.saturating_sub(self.config.snapshot_catch_up_entries) + 1;
        self.raw.mut_store().set_snapshot(snapshot.clone(), log_kept_from);
        self.snapshot_index = index;
        self.outputs.push_back(Output::Snapshot { snapshot, log_kept_from });
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(index >= self.applied_index, "snapshot {index} behind applied {}", self.applied_index);
        let auth;
        (self.store, self.membership, self.lessor, self.alarms, auth) =
            decode_image(&snapshot.data, self.lessor.min_ttl_s(), self.config.auth_token_ttl)
                .unwrap_or_else(|e| panic!("snapshot {index} from the leader is corrupt: {e}"));
        // Tokens are not replicated state: keep those of users who still exist.
        let before = std::mem::replace(&mut self.auth, auth);
        self.auth.adopt_tokens(before);
        // The restored lessor is not the primary: no revoke will be seen here for them.
        self.fail_expired_renewals();
        self.watches.restored(&self.store);
        self.applied_index = index;
        self.snapshot_index = index;
    }
}

/// A txn with no write in any branch, at any depth: served as a linearizable read.
fn txn_is_read_only(t: &TxnRequest) -> bool {
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(request_op::Request::RequestRange(_)) | None => true,
        Some(request_op::Request::RequestTxn(inner)) => txn_is_read_only(inner),
        Some(_) => false,
    })
}

/// etcd's `costTxn`: the larger of the two branches' put costs (nested txns included); 0 for a
/// txn that cannot put.
fn txn_put_cost_bytes(t: &TxnRequest) -> u64 {
    let branch = |ops: &[detcd_proto::etcdserverpb::RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(request_op::Request::RequestPut(p)) => {
                    (p.key.len() + p.value.len()) as u64 + limits::QUOTA_PUT_OVERHEAD_BYTES
                }
                Some(request_op::Request::RequestTxn(nested)) => txn_put_cost_bytes(nested),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

fn encode_image(
    store: &Store,
    applied_index: u64,
    cluster_id: u64,
    membership: &Membership,
    lessor: &Lessor,
    alarms: &Alarms,
    auth: &AuthStore,
) -> Vec<u8> {
    StateImage {
        applied_index,
        current_revision: store.current_revision(),
        compact_revision: store.compact_revision(),
        keys: store.to_key_images(),
        leases: lessor.to_images(),
        members: membership.list(),
        removed_member_ids: membership.removed_ids(),
        cluster_id,
        alarms: alarms.iter().map(|&(member_id, alarm)| AlarmMember { member_id, alarm }).collect(),
        auth: auth.to_image(),
    }
    .encode_to_vec()
}

type Decoded = (Store, Membership, Lessor, Alarms, AuthStore);

fn decode_image(data: &[u8], min_ttl_s: i64, token_ttl: Duration) -> Result<Decoded, String> {
    let image = StateImage::decode(data).map_err(|e| format!("state image does not decode: {e}"))?;
    let store = Store::from_key_images(image.current_revision, image.compact_revision, image.keys)?;
    let lessor = Lessor::restore(&image.leases, store.live_leased_keys(), min_ttl_s);
    let alarms = image.alarms.iter().map(|a| (a.member_id, a.alarm)).collect();
    let auth = AuthStore::from_image(image.auth, token_ttl)?;
    Ok((store, Membership::from_list(image.members, image.removed_member_ids), lessor, alarms, auth))
}
