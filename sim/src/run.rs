//! One simulated run: a cluster on simulated disks, clients, the fault schedule, then the
//! liveness phase and the checks. Only under `--cfg madsim`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use detcd_checks::history::{self, Operation, Outcome as OpOutcome, Request as OpRequest, Response as OpResponse};
use detcd_checks::workload::{run_client, ClientSpec, Recorder, Workload};
use detcd_proto::etcdserverpb::cluster_client::ClusterClient;
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd_proto::etcdserverpb::{
    CompactionRequest, HashKvRequest, Member as ClusterMember, MemberAddRequest, MemberListRequest,
    MemberPromoteRequest, MemberRemoveRequest, MoveLeaderRequest, PutRequest, RangeRequest, StatusRequest,
};
use detcd_server::clock::Clock;
use detcd_server::config::ServerConfig;
use detcd_server::disk::FileStorage;
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;

use crate::disk::{PowerLoss, SimFs, UnsyncedFlips};
use crate::schedule::{Event, Fault, Schedule, ARM_WINDOW_MS, VOTERS_MIN};

/// Largest drift of a member's clock, in parts per million either way (real oscillators stay
/// within about 100; we stress ten times that).
pub const CLOCK_DRIFT_PPM_MAX: i64 = 1_000;
/// WAL segments in the simulation are small, so that rollovers, the deletion of old segments
/// and damage to old segments all happen within a short run.
pub const SIM_WAL_SEGMENT_BYTES_MAX: u64 = 8 * 1024;
/// The liveness phase: how long members get to converge once every fault is healed.
pub const CONVERGE_ATTEMPTS_MAX: usize = 60;
pub const CONVERGE_POLL: Duration = Duration::from_millis(500);
/// The liveness phase's writes: at least one of these must succeed after healing.
pub const LIVENESS_WRITES: usize = 10;
/// Why a member's `serve` returned Ok: it was removed from the cluster (it has no other way to
/// stop in the simulation).
const STOPPED: &str = "stopped: removed from the cluster";
/// How long a removed member may take to notice and stop: a few election timeouts.
pub const REMOVED_STOP_MS_MAX: u64 = 10_000;
/// Client deadline per operation.
pub const CLIENT_OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a promotion is retried while the learner is not in sync with the leader.
pub const PROMOTE_RETRY_MS_MAX: u64 = 15_000;
const PROMOTE_RETRY_PAUSE_MS: u64 = 500;
/// Rounds of asking every member for the member list before a membership fault gives up.
pub const MEMBER_LIST_ROUNDS: usize = 10;
/// A power loss during the fault phase that leaves unsynced bytes on a member's disk flips a bit
/// among them once in this many (see [`UnsyncedFlips`]).
pub const UNSYNCED_FLIP_ONE_IN: u64 = 4;
/// How long a member restarted from a damaged disk may take to refuse to start (it reads its
/// WAL first thing, at once in simulated time).
pub const REFUSAL_WAIT_MS: u64 = 500;
/// How long an operator waits for a member just added to answer (or to stop) before the next
/// membership change. Joining asks every peer for the member list, 2 s per peer, in up to five
/// rounds (`detcd_server::JOIN_DISCOVERY_ROUNDS`): under partitions that took over 10 s, the
/// operator moved on, and the joiner then checked its --initial-cluster against a list that
/// had changed (seed 259).
pub const JOIN_WAIT_MS: u64 = 60_000;
const JOIN_POLL_MS: u64 = 200;
/// Starts of a member just added, when it refuses its --initial-cluster (see `add_member`).
const JOIN_ATTEMPTS: usize = 3;
/// Rounds an operator replacing a member tries to remove it (no leader during a partition, say).
pub const REPLACE_REMOVE_ROUNDS: usize = 5;
const REPLACE_REMOVE_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub members: usize,
    pub clients: usize,
    /// Of the fault phase, in simulated time.
    pub duration: Duration,
    /// The faults to inject (drawn from the seed, or read from a file).
    pub schedule: Schedule,
    /// The workloads clients may run: each client draws one from the seed.
    pub workloads: Vec<Workload>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    /// What the clients did, in the checkers' history format.
    pub history: Vec<Operation>,
    /// The workload of each client.
    pub client_workloads: Vec<Workload>,
    pub operations: usize,
    pub acknowledged_writes: usize,
    /// Acknowledged writes whose revision was compacted away before the check could read it.
    pub acks_compacted: usize,
    /// Events injected, per kind.
    pub faults: BTreeMap<&'static str, usize>,
    /// What the faults did, one line each, in the order they happened.
    pub fault_log: Vec<String>,
    /// FNV-1a over every client operation and its outcome and every fault outcome, with
    /// simulated times: equal for equal seeds.
    pub trace_hash: u64,
    pub failure: Option<String>,
    /// Simulated time from the start to the end of the checks.
    pub simulated: Duration,
}

/// Keys of the clients' workloads start with this.
pub const KEY_PREFIX: &str = "sim/";
/// One run in this many is all list-append (when it is allowed with other workloads).
pub const APPEND_ONLY_ONE_IN: u32 = 4;
/// Of the other runs, one in this many is all lease clients (when lease is allowed with other
/// workloads).
pub const LEASE_ONLY_ONE_IN: u32 = 3;
/// Keys each client's workload spreads over.
pub const KEYS_PER_WORKLOAD: usize = 5;
/// The client number compactions are recorded under in the history (clients count from 0).
pub const COMPACTOR_CLIENT: u64 = 1_000_000;

/// An acknowledged put: it must be in every member's history at `revision`.
#[derive(Debug, Clone)]
struct Ack {
    key: Vec<u8>,
    value: Vec<u8>,
    revision: i64,
}

#[derive(Default)]
struct Record {
    trace_hash: u64,
    fault_log: Vec<String>,
    /// The first violation seen while faults ran (a member carrying on after a failed fsync, a
    /// member starting from a corrupt WAL).
    failure: Option<String>,
    /// The highest revision a compaction was asked at (it may have been applied even if the
    /// call failed).
    compacted: i64,
}

impl Record {
    fn trace(&mut self, words: &[u64], text: &str) {
        if self.trace_hash == 0 {
            self.trace_hash = 0xcbf2_9ce4_8422_2325;
        }
        for b in words.iter().flat_map(|w| w.to_le_bytes()).chain(text.bytes()) {
            self.trace_hash = (self.trace_hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn member_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

fn client_url(i: usize) -> String {
    format!("http://{}:2379", member_ip(i))
}

fn peer_url(i: usize) -> String {
    format!("http://{}:2380", member_ip(i))
}

/// `name=url,...` of every member of `list`, named by its slot (of `slots`).
fn initial_cluster_of(list: &[ClusterMember], slots: usize) -> String {
    let name =
        |url: &String| (0..slots).find(|&i| peer_url(i) == *url).map_or("unknown".into(), |i| format!("m{}", i + 1));
    let entries: Vec<String> =
        list.iter().flat_map(|m| &m.peer_ur_ls).map(|url| format!("{}={url}", name(url))).collect();
    entries.join(",")
}

/// A Cluster client of slot `m`, if it connects within 300 ms.
async fn cluster_client(m: usize) -> Option<ClusterClient<tonic::transport::Channel>> {
    tokio::time::timeout(Duration::from_millis(300), ClusterClient::connect(client_url(m))).await.ok()?.ok()
}

/// Runs one seed to the end; never panics on a failed check (the report says it).
pub fn run(options: &Options) -> Report {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(options.seed, madsim::Config::default());
    runtime.block_on(simulate(options.clone()))
}

/// A member slot as the fault injector sees it: the founders, and one spare that membership
/// faults add (a founder's slot is added again, under a new id, once it was removed).
struct Member {
    node: NodeId,
    /// The member id of the slot's current incarnation (0: the spare, never added).
    id: Arc<AtomicU64>,
    /// Whether the node runs `serve` when it boots (the spare boots idle until it is added).
    enabled: Arc<AtomicBool>,
    /// Whether it boots to join an existing cluster (`--initial-cluster-state existing`) rather
    /// than as a founder.
    joins: Arc<AtomicBool>,
    fs: SimFs,
    jumps: Arc<AtomicU64>,
    /// None while the member runs; why it stopped once `serve` returned.
    exit: Arc<Mutex<Option<String>>>,
    /// The --initial-cluster it joins with: the member list right after its MemberAdd.
    initial_cluster: Arc<Mutex<String>>,
}

/// What became of a MemberRemove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Removed,
    /// Not in the member list (never added, or removed by an earlier call whose answer was lost).
    NotAMember,
    /// Refused, timed out or not sent (it may still have been applied).
    Failed,
}

/// What the fault tasks share.
struct World {
    handle: Handle,
    members: Vec<Member>,
    record: Arc<Mutex<Record>>,
    /// The clients' history; compactions the faults make go in too (unless the run is all
    /// list-append: the etcd model, which compactions would wake, does not follow those).
    recorder: Recorder,
    record_compactions: bool,
    /// Members down for good (a damaged WAL they rightly refused to start from, while an
    /// operator replaces them, or for good when that failed).
    gone: Mutex<BTreeSet<usize>>,
    /// Members a MemberRemove was sent for (it may have been applied even if the call failed).
    removing: Mutex<BTreeSet<usize>>,
    /// One membership change at a time (as an operator makes them).
    membership: tokio::sync::Mutex<()>,
    /// The simulated start, for times in the fault log.
    start: tokio::time::Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl World {
    fn log(&self, line: String) {
        let at_ms = self.start.elapsed().as_millis() as u64;
        tracing::info!(at_ms, "fault: {line}");
        let mut r = lock(&self.record);
        r.trace(&[at_ms], &line);
        r.fault_log.push(format!("{at_ms}ms {line}"));
    }

    fn fail(&self, why: String) {
        self.log(format!("VIOLATION: {why}"));
        lock(&self.record).failure.get_or_insert(why);
    }

    fn exit_of(&self, m: usize) -> Option<String> {
        lock(&self.members[m].exit).clone()
    }

    fn id(&self, m: usize) -> u64 {
        self.members[m].id.load(Ordering::Relaxed)
    }

    /// Slots that take part in the cluster as far as the injector knows (added, not removed).
    fn in_cluster(&self) -> Vec<usize> {
        let (gone, removing) = (lock(&self.gone).clone(), lock(&self.removing).clone());
        (0..self.members.len()).filter(|i| self.id(*i) != 0 && !gone.contains(i) && !removing.contains(i)).collect()
    }

    /// The cluster's member list (linearizable), from the first slot that answers, asking
    /// every slot up to [`MEMBER_LIST_ROUNDS`] times (no leader yet, or a partition).
    async fn member_list(&self) -> Option<(usize, Vec<ClusterMember>)> {
        for _ in 0..MEMBER_LIST_ROUNDS {
            for i in self.in_cluster() {
                let Some(mut c) = cluster_client(i).await else { continue };
                let req = MemberListRequest { linearizable: true };
                if let Ok(Ok(r)) = tokio::time::timeout(CLIENT_OP_TIMEOUT, c.member_list(req)).await {
                    return Some((i, r.into_inner().members));
                }
            }
            tokio::time::sleep(CONVERGE_POLL).await;
        }
        None
    }

    /// MemberAdd as a learner of slot `m`'s peer URL; on success (learned from the answer, or
    /// from the member list when the answer was lost) the slot's node starts with a fresh disk
    /// to join the cluster.
    /// Whether it was added.
    async fn add_member(&self, m: usize) -> bool {
        let Some((_, list)) = self.member_list().await else {
            self.log(format!("add m{}: no member list", m + 1));
            return false;
        };
        let url = peer_url(m);
        if list.iter().any(|x| x.peer_ur_ls.contains(&url)) {
            self.log(format!("add m{}: its peer URL is a member's already", m + 1));
            return false;
        }
        if list.len() >= self.members.len() {
            self.log(format!("add m{}: the cluster has {} members already", m + 1, list.len()));
            return false;
        }
        let mut outcome = "no member reachable".to_string();
        let mut id = None;
        let mut members_after = Vec::new();
        for other in self.in_cluster() {
            let Some(mut c) = cluster_client(other).await else { continue };
            let req = MemberAddRequest { peer_ur_ls: vec![url.clone()], is_learner: true };
            match tokio::time::timeout(CLIENT_OP_TIMEOUT, c.member_add(req)).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    id = r.member.map(|x| x.id);
                    members_after = r.members;
                    outcome = format!("added through m{}", other + 1);
                    break;
                }
                Ok(Err(e)) => outcome = format!("m{} refused: {}", other + 1, e.message()),
                Err(_) => outcome = format!("timed out at m{}", other + 1),
            }
        }
        if id.is_none() {
            // The answer may be lost while the addition was applied.
            if let Some((_, list)) = self.member_list().await {
                id = list.iter().find(|x| x.peer_ur_ls.contains(&url)).map(|x| x.id);
                members_after = list;
            }
        }
        let Some(id) = id else {
            self.log(format!("add m{} as a learner: {outcome}", m + 1));
            return false;
        };
        let slot = &self.members[m];
        // Whatever ran in the slot (a removed member restarted from its old data) goes, and so
        // does its disk: the new member starts empty and asks the cluster who it is.
        self.handle.kill(slot.node);
        slot.fs.wipe();
        slot.id.store(id, Ordering::Relaxed);
        // What `etcdctl member add` prints as ETCD_INITIAL_CLUSTER: the joiner's --initial-cluster
        // must list the cluster's members as they are (etcd's ValidateClusterAndAssignIDs).
        *lock(&slot.initial_cluster) = initial_cluster_of(&members_after, self.members.len());
        slot.joins.store(true, Ordering::Relaxed);
        slot.enabled.store(true, Ordering::Relaxed);
        lock(&self.removing).remove(&m);
        lock(&self.gone).remove(&m);
        self.handle.restart(slot.node);
        self.log(format!("add m{} as learner {id:x}: {outcome}; started it on a fresh disk", m + 1));
        // As an operator does, the next change waits until the new member has joined: it checks
        // its --initial-cluster against the member list as it starts, which a change in between
        // would make unequal (etcd's "member count is unequal"). One that was in flight before
        // (a removal that timed out, applied after the addition) can still do that: then the
        // operator starts it again with the member list as it is now.
        for attempt in 1..=JOIN_ATTEMPTS {
            if self.wait_for_status(m, JOIN_WAIT_MS).await {
                self.log(format!("m{} joined", m + 1));
                return true;
            }
            let exit = self.exit_of(m).unwrap_or_default();
            if !exit.contains("error validating peerURLs") || attempt == JOIN_ATTEMPTS {
                break;
            }
            let Some((_, list)) = self.member_list().await else { break };
            self.log(format!(
                "m{} refused its --initial-cluster ({exit}); starting it again with the member list",
                m + 1
            ));
            slot.fs.wipe();
            *lock(&slot.initial_cluster) = initial_cluster_of(&list, self.members.len());
            self.handle.restart(slot.node);
        }
        match self.exit_of(m) {
            Some(exit) => self.log(format!("m{} stopped before it joined: {exit}", m + 1)),
            None => self.log(format!("m{} did not answer within {JOIN_WAIT_MS}ms of its start", m + 1)),
        }
        true
    }

    /// Whether slot `m` answers Status within `ms` (it listens to clients once it knows who it
    /// is); false at once if its process stops.
    async fn wait_for_status(&self, m: usize, ms: u64) -> bool {
        for _ in 0..ms.div_ceil(JOIN_POLL_MS) {
            if self.exit_of(m).is_some() {
                return false;
            }
            if let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_millis(300), MaintenanceClient::connect(client_url(m))).await
            {
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(300), c.status(StatusRequest {})).await {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(JOIN_POLL_MS)).await;
        }
        false
    }

    /// MemberRemove of slot `m` through another member. The voter bound ([`VOTERS_MIN`]) holds for a running
    /// member; a `dead` one (down for good: its disk refused) an operator removes whatever the
    /// count, to replace it, and tries [`REPLACE_REMOVE_ROUNDS`] times.
    async fn remove_member(&self, m: usize, dead: bool) -> Removal {
        let id = self.id(m);
        let rounds = if dead { REPLACE_REMOVE_ROUNDS } else { 1 };
        let mut outcome = "no member reachable".to_string();
        for round in 0..rounds {
            if round > 0 {
                tokio::time::sleep(REPLACE_REMOVE_PAUSE).await;
            }
            let Some((_, list)) = self.member_list().await else {
                outcome = "no member list".into();
                continue;
            };
            let Some(target) = list.iter().find(|x| x.id == id && id != 0) else {
                // Not (or no longer: an earlier call timed out yet was applied) a member.
                self.log(format!("remove m{}: not a member", m + 1));
                return Removal::NotAMember;
            };
            let voters = list.iter().filter(|x| !x.is_learner).count();
            if !dead && !target.is_learner && voters <= VOTERS_MIN {
                self.log(format!("remove m{}: only {voters} voters; keeping it", m + 1));
                return Removal::Failed;
            }
            lock(&self.removing).insert(m);
            for other in self.in_cluster().into_iter().filter(|&o| o != m) {
                let Some(mut c) = cluster_client(other).await else { continue };
                match tokio::time::timeout(CLIENT_OP_TIMEOUT, c.member_remove(MemberRemoveRequest { id })).await {
                    Ok(Ok(_)) => {
                        self.log(format!("remove m{}: removed through m{}", m + 1, other + 1));
                        return Removal::Removed;
                    }
                    Ok(Err(e)) => outcome = format!("m{} refused: {}", other + 1, e.message()),
                    Err(_) => outcome = format!("timed out at m{}", other + 1),
                }
            }
        }
        self.log(format!("remove m{}: {outcome}", m + 1));
        Removal::Failed
    }

    /// What an operator does about a member that refuses to start from its disk (etcd's
    /// runtime-reconfiguration guide for a member whose data is lost): remove it, wipe the
    /// disk, add it back as a learner under a new id, promote it once it caught up. If a step
    /// fails the member stays down for good, as an operator would leave it for later.
    async fn replace_member(&self, m: usize) {
        let _one_at_a_time = self.membership.lock().await;
        lock(&self.gone).insert(m);
        self.handle.kill(self.members[m].node);
        self.log(format!("replacing m{} (an operator: remove, wipe, add as a learner, promote)", m + 1));
        if self.remove_member(m, true).await == Removal::Failed {
            return self.log(format!("replace m{}: not removed; it stays down", m + 1));
        }
        // etcd takes one learner at a time: finish an addition in progress first.
        if let Some((_, list)) = self.member_list().await {
            for learner in list.iter().filter(|x| x.is_learner) {
                if let Some(slot) = (0..self.members.len()).find(|&i| self.id(i) == learner.id) {
                    self.promote_member(slot).await;
                }
            }
        }
        if !self.add_member(m).await {
            return self.log(format!("replace m{}: not added back; it stays down", m + 1));
        }
        self.promote_member(m).await;
    }

    /// A member restarted after a power loss that flipped a bit in its unsynced bytes either
    /// starts (the flip was in its WAL's torn tail, cut off) or refuses to start naming the
    /// file; then an operator replaces it.
    async fn after_restart_from(&self, m: usize, loss: &PowerLoss) {
        let Some(flip) = &loss.flipped else { return };
        let refused = self.wait_for(REFUSAL_WAIT_MS, || self.exit_of(m).is_some_and(|e| e.contains("corrupt"))).await;
        if !refused {
            return self.log(format!("m{} started: the flipped bit was in a torn tail it cut off", m + 1));
        }
        let exit = self.exit_of(m).unwrap_or_default();
        if !exit.contains(&*flip.path.to_string_lossy()) {
            // Another fault damaged another file meanwhile (a corrupt-WAL fault right after this
            // one's window): that fault's task deals with it. Recovery naming the right file
            // is the disk's unit tests' business.
            return self.log(format!("m{} refused to start for another reason: {exit}", m + 1));
        }
        self.log(format!("m{} refused to start: {exit}", m + 1));
        self.replace_member(m).await;
    }

    /// MemberPromote of slot `m`'s learner, retried while it is not in sync with the leader.
    async fn promote_member(&self, m: usize) {
        let id = self.id(m);
        if id == 0 || !self.in_cluster().contains(&m) {
            return self.log(format!("promote m{}: not added", m + 1));
        }
        let mut outcome = "no member reachable".to_string();
        let mut waited_ms = 0;
        while waited_ms <= PROMOTE_RETRY_MS_MAX {
            for other in self.in_cluster().into_iter().filter(|&o| o != m) {
                let Some(mut c) = cluster_client(other).await else { continue };
                match tokio::time::timeout(CLIENT_OP_TIMEOUT, c.member_promote(MemberPromoteRequest { id })).await {
                    Ok(Ok(_)) => return self.log(format!("promoted m{} ({id:x}) through m{}", m + 1, other + 1)),
                    Ok(Err(e))
                        if e.message().contains("can only promote a learner member")
                            && !e.message().contains("in sync") =>
                    {
                        return self.log(format!("promote m{}: {}", m + 1, e.message()))
                    }
                    Ok(Err(e)) if e.message().contains("member not found") => {
                        return self.log(format!("promote m{}: {}", m + 1, e.message()))
                    }
                    Ok(Err(e)) => outcome = format!("m{} refused: {}", other + 1, e.message()),
                    Err(_) => outcome = format!("timed out at m{}", other + 1),
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(PROMOTE_RETRY_PAUSE_MS)).await;
            waited_ms += PROMOTE_RETRY_PAUSE_MS;
        }
        self.log(format!("promote m{}: gave up after {PROMOTE_RETRY_MS_MAX}ms: {outcome}", m + 1));
    }

    fn restart(&self, m: usize) {
        if !lock(&self.gone).contains(&m) {
            self.handle.restart(self.members[m].node);
        }
    }

    /// Kills member `m`'s process and, with `power_loss`, cuts its machine's power, which may
    /// flip a bit in what survives of its unsynced bytes as `flips` says.
    fn kill(&self, m: usize, power_loss: bool, flips: UnsyncedFlips) -> PowerLoss {
        self.handle.kill(self.members[m].node);
        if !power_loss {
            return PowerLoss::default();
        }
        let loss = self.members[m].fs.power_loss(madsim::rand::thread_rng().gen(), flips);
        if let Some(flip) = &loss.flipped {
            self.log(format!(
                "m{}: a bit flipped in unsynced bytes of {} at offset {} (synced up to {})",
                m + 1,
                flip.path.display(),
                flip.offset,
                flip.unsynced_from
            ));
        }
        loss
    }

    /// The member the majority of reachable members call leader, if any.
    async fn leader(&self) -> Option<usize> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for i in 0..self.members.len() {
            let Ok(Ok(mut m)) =
                tokio::time::timeout(Duration::from_millis(300), MaintenanceClient::connect(client_url(i))).await
            else {
                continue;
            };
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(300), m.status(StatusRequest {})).await {
                let leader = r.into_inner().leader;
                if leader != 0 {
                    *votes.entry(leader).or_insert(0) += 1;
                }
            }
        }
        let (&leader, _) = votes.iter().max_by_key(|&(_, n)| *n)?;
        (0..self.members.len()).find(|&i| self.id(i) == leader)
    }

    async fn apply(self: Arc<Self>, event: Event) {
        let net = madsim::net::NetSim::current();
        let nodes: Vec<NodeId> = self.members.iter().map(|m| m.node).collect();
        let sleep = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
        self.log(format!("begin {event}"));
        let kind = event.fault.kind().name();
        match event.fault {
            Fault::Partition { side, for_ms } => {
                let other: Vec<usize> = (0..nodes.len()).filter(|i| !side.contains(i)).collect();
                let cut = |clog: bool| {
                    for &a in &side {
                        for &b in &other {
                            if clog {
                                net.clog_link(nodes[a], nodes[b]);
                                net.clog_link(nodes[b], nodes[a]);
                            } else {
                                net.unclog_link(nodes[a], nodes[b]);
                                net.unclog_link(nodes[b], nodes[a]);
                            }
                        }
                    }
                };
                cut(true);
                sleep(for_ms).await;
                cut(false);
            }
            Fault::CutLink { from, to, for_ms } => {
                net.clog_link(nodes[from], nodes[to]);
                sleep(for_ms).await;
                net.unclog_link(nodes[from], nodes[to]);
            }
            Fault::ClogIn { member, for_ms } => {
                net.clog_node_in(nodes[member]);
                sleep(for_ms).await;
                net.unclog_node_in(nodes[member]);
            }
            Fault::ClogOut { member, for_ms } => {
                net.clog_node_out(nodes[member]);
                sleep(for_ms).await;
                net.unclog_node_out(nodes[member]);
            }
            Fault::IsolateLeader { for_ms } => match self.leader().await {
                Some(leader) => {
                    self.log(format!("isolating the leader m{}", leader + 1));
                    net.clog_node(nodes[leader]);
                    sleep(for_ms).await;
                    net.unclog_node(nodes[leader]);
                }
                None => self.log("no leader to isolate".into()),
            },
            Fault::Network { latency_ms_max, loss_permille, for_ms } => {
                net.update_config(|c| {
                    c.send_latency = Duration::from_millis(1)..Duration::from_millis(latency_ms_max.max(2));
                    c.packet_loss_rate = loss_permille as f64 / 1000.0;
                });
                sleep(for_ms).await;
                net.update_config(|c| *c = madsim::net::Config::default());
            }
            Fault::Crash { member, power_loss, for_ms } => {
                let loss = self.kill(member, power_loss, UnsyncedFlips::OneIn(UNSYNCED_FLIP_ONE_IN));
                if loss.torn_files > 0 {
                    self.log(format!("m{} lost power with {} torn files", member + 1, loss.torn_files));
                }
                sleep(for_ms).await;
                self.restart(member);
                self.after_restart_from(member, &loss).await;
            }
            Fault::Pause { member, for_ms } => {
                self.handle.pause(nodes[member]);
                sleep(for_ms).await;
                self.handle.resume(nodes[member]);
            }
            Fault::ClockJump { member, by_ms } => {
                self.members[member].jumps.fetch_add(by_ms * 1_000_000, Ordering::Relaxed);
            }
            Fault::PowerFailure { member, after_ops, for_ms } => {
                let fs = &self.members[member].fs;
                fs.arm_power_failure(after_ops);
                if self.wait_for(ARM_WINDOW_MS, || fs.powered_off()).await {
                    let loss = self.kill(member, true, UnsyncedFlips::OneIn(UNSYNCED_FLIP_ONE_IN));
                    self.log(format!(
                        "m{} lost power at a file-system operation ({} torn files)",
                        member + 1,
                        loss.torn_files
                    ));
                    sleep(for_ms).await;
                    self.restart(member);
                    self.after_restart_from(member, &loss).await;
                } else {
                    fs.disarm();
                    self.log(format!("m{} did not touch its disk: no power failure", member + 1));
                }
            }
            Fault::SyncFailure { member, for_ms } => {
                let fs = &self.members[member].fs;
                let failed_before = fs.syncs_failed();
                fs.fail_next_sync();
                if self.wait_for(ARM_WINDOW_MS, || fs.syncs_failed() > failed_before).await {
                    // etcd exits on a failed fsync; a member that carries on may acknowledge
                    // what will never be durable.
                    if !self.wait_for(1_000, || self.exit_of(member).is_some()).await {
                        self.fail(format!("m{} carried on after a failed fsync", member + 1));
                    }
                    let loss = self.kill(member, true, UnsyncedFlips::OneIn(UNSYNCED_FLIP_ONE_IN));
                    self.log(format!(
                        "m{} stopped after a failed fsync: {:?}; restarting from its disk ({} torn files)",
                        member + 1,
                        self.exit_of(member).unwrap_or_default(),
                        loss.torn_files
                    ));
                    sleep(for_ms).await;
                    self.restart(member);
                    self.after_restart_from(member, &loss).await;
                } else {
                    fs.disarm();
                    self.log(format!("m{} did not sync: no fsync failure", member + 1));
                }
            }
            Fault::CorruptWal { member } => {
                if let Some(exit) = self.exit_of(member).filter(|e| e.contains("corrupt")) {
                    // It already refuses to start from a damaged disk (a bit flipped in unsynced
                    // bytes at a power loss), and the operator is replacing it: one more flip
                    // could only be reported as that first damage (5-member lease seed 122).
                    return self.log(format!("m{} refuses to start already ({exit}): not corrupted again", member + 1));
                }
                self.kill(member, false, UnsyncedFlips::Never);
                let fs = &self.members[member].fs;
                match fs.corrupt_old_wal_segment(madsim::rand::thread_rng().gen()) {
                    None => {
                        self.log(format!("m{} has no old WAL segment to corrupt", member + 1));
                        self.restart(member);
                    }
                    Some((path, offset)) => {
                        self.log(format!("flipped a bit in m{}'s {} at offset {offset}", member + 1, path.display()));
                        self.restart(member);
                        let refused = self.wait_for(2_000, || self.exit_of(member).is_some()).await;
                        let exit = self.exit_of(member).unwrap_or_default();
                        let named = exit.contains("corrupt WAL record") && exit.contains(&*path.to_string_lossy());
                        if refused && named {
                            self.log(format!("m{} refused to start: {exit}", member + 1));
                            self.replace_member(member).await;
                        } else {
                            self.fail(format!(
                                "m{} started from a WAL with a flipped bit in {} at {offset} (exit: {exit:?})",
                                member + 1,
                                path.display()
                            ));
                            lock(&self.gone).insert(member);
                            self.handle.kill(nodes[member]);
                        }
                    }
                }
            }
            Fault::AddMember { member } => {
                let _one_at_a_time = self.membership.lock().await;
                self.add_member(member).await;
            }
            Fault::PromoteMember { member } => {
                let _one_at_a_time = self.membership.lock().await;
                self.promote_member(member).await;
            }
            Fault::RemoveMember { member } => {
                let _one_at_a_time = self.membership.lock().await;
                if self.remove_member(member, false).await == Removal::Removed {
                    // It stops once it applies its removal or a peer refuses its messages. Then an
                    // operator restarts it by mistake, from its old data: it must stop again.
                    if self.wait_for(ARM_WINDOW_MS, || self.exit_of(member).is_some()).await {
                        self.log(format!("m{} stopped: {}", member + 1, self.exit_of(member).unwrap_or_default()));
                        self.handle.restart(nodes[member]);
                        self.log(format!("restarted the removed m{} from its old data", member + 1));
                    }
                }
            }
            Fault::MoveLeader { to } => {
                let Some(leader) = self.leader().await else {
                    return self.log("no leader to move".into());
                };
                if leader == to {
                    return self.log(format!("m{} leads already", to + 1));
                }
                let request = MoveLeaderRequest { target_id: self.id(to) };
                let outcome = match MaintenanceClient::connect(client_url(leader)).await {
                    Ok(mut m) => match tokio::time::timeout(CLIENT_OP_TIMEOUT, m.move_leader(request)).await {
                        Ok(Ok(_)) => "moved".to_string(),
                        Ok(Err(e)) => format!("refused: {}", e.message()),
                        Err(_) => "timed out".to_string(),
                    },
                    Err(e) => format!("unreachable: {e}"),
                };
                self.log(format!("move leader m{} -> m{}: {outcome}", leader + 1, to + 1));
            }
            Fault::Compact { back } => {
                let target = madsim::rand::thread_rng().gen_range(0..self.members.len());
                let Ok(mut kv) = KvClient::connect(client_url(target)).await else {
                    return self.log(format!("compact: m{} unreachable", target + 1));
                };
                let req =
                    RangeRequest { key: Bytes::from_static(b"compactor"), serializable: true, ..Default::default() };
                let Ok(Ok(r)) = tokio::time::timeout(CLIENT_OP_TIMEOUT, kv.range(req)).await else {
                    return self.log("compact: no revision".into());
                };
                let revision = r.into_inner().header.map_or(0, |h| h.revision) - back as i64;
                if revision < 2 {
                    return self.log("compact: nothing to compact yet".into());
                }
                let req = CompactionRequest { revision, physical: false };
                {
                    // A compaction that times out may still be applied: counted from the call.
                    let mut r = lock(&self.record);
                    r.compacted = r.compacted.max(revision);
                }
                // In the history too: the checkers must know why old revisions went.
                let call_ns = self.recorder.now_ns();
                let answer = tokio::time::timeout(CLIENT_OP_TIMEOUT, kv.compact(req)).await;
                let mut op = Operation {
                    client: COMPACTOR_CLIENT,
                    call_ns,
                    return_ns: self.recorder.now_ns(),
                    op: OpRequest::Compact { revision, physical: false },
                    outcome: OpOutcome::Indeterminate,
                    output: None,
                    error: None,
                };
                match answer {
                    Ok(Ok(r)) => {
                        op.outcome = OpOutcome::Ok;
                        op.output = Some(OpResponse::Compact {
                            header_revision: r.into_inner().header.map_or(0, |h| h.revision),
                        });
                        self.log(format!("compacted at revision {revision}"));
                    }
                    Ok(Err(e)) => {
                        // Refused before anything was applied (a compacted or future revision,
                        // no leader, a learner), as the clients classify it; anything else (a
                        // lost connection) may have been applied.
                        let refused = detcd_checks::workload::certainly_refused(&e);
                        op.outcome = if refused { OpOutcome::Failed } else { OpOutcome::Indeterminate };
                        op.error = Some(e.message().to_string());
                        self.log(format!("compact at {revision}: {}", e.message()));
                    }
                    Err(_) => {
                        op.error = Some("timed out".into());
                        self.log(format!("compact at {revision}: timed out"));
                    }
                }
                if self.record_compactions {
                    self.recorder.push(op);
                }
            }
        }
        self.log(format!("end {kind}"));
    }

    /// Polls `done` every 10 ms for up to `ms`; whether it came true.
    async fn wait_for(&self, ms: u64, done: impl Fn() -> bool) -> bool {
        for _ in 0..ms.div_ceil(10) {
            if done() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done()
    }

    /// The liveness phase begins: every fault healed, every member (but those gone for good)
    /// running.
    async fn heal_all(&self) {
        let net = madsim::net::NetSim::current();
        net.update_config(|c| *c = madsim::net::Config::default());
        let gone = lock(&self.gone).clone();
        let mut stopped = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            net.unclog_node(m.node);
            for other in &self.members {
                net.unclog_link(m.node, other.node);
            }
            self.handle.resume(m.node);
            m.fs.disarm();
            let exit = self.exit_of(i);
            // `serve` returns Ok ("stopped") only when the member was removed: that one stays
            // stopped.
            if !gone.contains(&i) && exit.is_some() && exit.as_deref() != Some(STOPPED) {
                stopped.push(i);
            }
        }
        // A joiner that stopped before it joined (partitioned from every peer while it asked for
        // the member list) would check its --initial-cluster, the member list of its MemberAdd,
        // against a cluster that may have changed since (5-member lease seed 81: a member was
        // removed meanwhile, and the joiner exited with "member count is unequal" at every
        // start). An operator starts it with the member list as it is now; a member with data
        // ignores the flag, as etcd does.
        if stopped.iter().any(|&i| self.members[i].joins.load(Ordering::Relaxed)) {
            if let Some((_, list)) = self.member_list().await {
                for &i in &stopped {
                    let slot = &self.members[i];
                    if slot.joins.load(Ordering::Relaxed) {
                        *lock(&slot.initial_cluster) = initial_cluster_of(&list, self.members.len());
                        self.log(format!(
                            "m{} stopped ({}): starting it again with the member list",
                            i + 1,
                            self.exit_of(i).unwrap_or_default()
                        ));
                    }
                }
            }
        }
        for i in stopped {
            // Stopped on its own (a failure the injector did not restart): power-cycle it.
            // No flips: the liveness phase injects no faults.
            self.kill(i, true, UnsyncedFlips::Never);
            self.restart(i);
        }
    }
}

async fn simulate(o: Options) -> Report {
    let handle = Handle::current();
    let start = tokio::time::Instant::now();
    // The founders found the cluster; a joiner (the spare, or a founder's slot added again) asks
    // every slot for the member list.
    let founders = (0..o.members).map(|i| format!("m{}={}", i + 1, peer_url(i))).collect::<Vec<_>>().join(",");
    let spare = o.members;
    let every_slot = format!("{founders},m{}={}", spare + 1, peer_url(spare));
    let mut members = Vec::new();
    let mut skews = Vec::new();
    for i in 0..=spare {
        let args: Vec<String> = vec![
            format!("--name=m{}", i + 1),
            format!("--data-dir=/m{}", i + 1),
            format!("--listen-client-urls={}", client_url(i)),
            format!("--advertise-client-urls={}", client_url(i)),
            format!("--listen-peer-urls=http://{}:2380", member_ip(i)),
            format!("--initial-advertise-peer-urls=http://{}:2380", member_ip(i)),
            // Snapshots a few times a run (etcd's default is 100,000): often enough that members
            // catch up from snapshots, rarely enough that encoding the whole state image (all
            // of the MVCC history) does not dominate the run (at 50 it took half the time of
            // a list-append run).
            "--snapshot-count=200".into(),
            "--experimental-snapshot-catchup-entries=10".into(),
        ];
        let with = |args: &[String], more: [String; 2]| {
            let all: Vec<String> = args.iter().cloned().chain(more).collect();
            ServerConfig::parse(&all, &[]).expect("valid member flags")
        };
        let join_args = args.clone();
        let join_config = move |initial_cluster: &str| {
            with(
                &join_args,
                [format!("--initial-cluster={initial_cluster}"), "--initial-cluster-state=existing".into()],
            )
        };
        let initial_cluster = Arc::new(Mutex::new(every_slot.clone()));
        let (config, id) = if i < spare {
            let config = with(&args, [format!("--initial-cluster={founders}"), "--initial-cluster-state=new".into()]);
            let id = config.member_ids()[&config.name];
            (config, id)
        } else {
            (join_config(&every_slot), 0)
        };
        // Each member's own clock: an offset, a drift, and the forward jumps of the faults.
        let (offset, drift_ppm) = {
            let mut rng = madsim::rand::thread_rng();
            (Duration::from_millis(rng.gen_range(0..10_000)), rng.gen_range(-CLOCK_DRIFT_PPM_MAX..=CLOCK_DRIFT_PPM_MAX))
        };
        skews.push(format!("m{} clock +{offset:?} {drift_ppm:+} ppm", i + 1));
        let (fs, jumps, exit) = (SimFs::new(), Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(None)));
        let (enabled, joins) = (Arc::new(AtomicBool::new(i < spare)), Arc::new(AtomicBool::new(i == spare)));
        let (boot_fs, boot_jumps, boot_exit) = (fs.clone(), jumps.clone(), exit.clone());
        let (boot_enabled, boot_joins) = (enabled.clone(), joins.clone());
        let boot_initial_cluster = initial_cluster.clone();
        let node: NodeHandle = handle
            .create_node()
            .name(format!("m{}", i + 1))
            .ip(member_ip(i))
            .init(move || {
                let config = if boot_joins.load(Ordering::Relaxed) {
                    join_config(&lock(&boot_initial_cluster))
                } else {
                    config.clone()
                };
                let enabled = boot_enabled.load(Ordering::Relaxed);
                let (fs, jumps, exit) = (boot_fs.clone(), boot_jumps.clone(), boot_exit.clone());
                // A new seed per boot, from the run's seed: proposal ids differ across restarts.
                let seed = madsim::rand::thread_rng().gen::<u64>();
                *lock(&exit) = None;
                async move {
                    if !enabled {
                        // The spare before it is added: an idle machine.
                        return std::future::pending().await;
                    }
                    let clock = Clock::skewed(offset, drift_ppm, jumps);
                    let result = match FileStorage::open_in(Arc::new(fs), &config.data_dir) {
                        Ok(storage) => {
                            let storage = storage.with_segment_bytes_max(SIM_WAL_SEGMENT_BYTES_MAX);
                            detcd_server::serve(config, storage, seed, clock, std::future::pending()).await
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let why = match result {
                        Ok(()) => STOPPED.to_string(),
                        Err(e) => e,
                    };
                    tracing::warn!("member stopped: {why}");
                    *lock(&exit) = Some(why);
                }
            })
            .build();
        members.push(Member {
            node: node.id(),
            id: Arc::new(AtomicU64::new(id)),
            enabled,
            joins,
            fs,
            jumps,
            exit,
            initial_cluster,
        });
    }

    // List-append transactions write keys the etcd model does not follow, yet bump the global
    // revision it checks: a run is either all append (Elle checks it) or none (the etcd model
    // checks it).
    // Lease clients run alone in one run in LEASE_ONLY_ONE_IN, and beside the other KV clients
    // in the rest (where leases' expiries meet txns and registers in one search of the etcd
    // model; that search ran out of its budget on about 1 seed in 100 until the fifth session's
    // prunings, so lease clients ran alone only).
    let kv_workloads: Vec<Workload> =
        o.workloads.iter().copied().filter(|&w| w != Workload::Append && w != Workload::Lease).collect();
    let append_only = o.workloads.contains(&Workload::Append)
        && (kv_workloads.is_empty() || madsim::rand::thread_rng().gen_ratio(1, APPEND_ONLY_ONE_IN));
    let lease_only = !append_only
        && o.workloads.contains(&Workload::Lease)
        && (kv_workloads.is_empty() || madsim::rand::thread_rng().gen_ratio(1, LEASE_ONLY_ONE_IN));
    let drawn_from = match (append_only, lease_only) {
        (true, _) => vec![Workload::Append],
        (_, true) => vec![Workload::Lease],
        _ if o.workloads.contains(&Workload::Lease) => kv_workloads.into_iter().chain([Workload::Lease]).collect(),
        _ => kv_workloads,
    };
    let record = Arc::new(Mutex::new(Record::default()));
    let recorder = Recorder::new();
    let world = Arc::new(World {
        handle: handle.clone(),
        members,
        record: record.clone(),
        recorder: recorder.clone(),
        record_compactions: !append_only,
        gone: Default::default(),
        removing: Default::default(),
        membership: Default::default(),
        start,
    });
    let stop_at = start + o.duration;
    let mut clients = Vec::new();
    let mut client_workloads = Vec::new();
    let endpoints: Vec<String> = (0..o.members).map(client_url).collect();
    for c in 0..o.clients {
        let node = handle
            .create_node()
            .name(format!("client{c}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, c as u8 + 1)))
            .build();
        let (workload, seed) = {
            let mut rng = madsim::rand::thread_rng();
            (drawn_from[rng.gen_range(0..drawn_from.len())], rng.gen::<u64>())
        };
        client_workloads.push(workload);
        let spec = ClientSpec {
            id: c as u64,
            endpoints: endpoints.clone(),
            workload,
            seed,
            op_timeout: CLIENT_OP_TIMEOUT,
            stop_at,
            keys: KEYS_PER_WORKLOAD,
            key_prefix: KEY_PREFIX.to_string(),
        };
        clients.push(node.spawn(run_client(spec, recorder.clone())));
    }

    // The fault schedule: one task per event on a controller node of its own (it talks to the
    // members for the leader's identity, leader moves and compactions).
    let controller = handle.create_node().name("controller").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1))).build();
    let mut faults = Vec::new();
    for event in o.schedule.events.iter().cloned() {
        let world = world.clone();
        faults.push(controller.spawn(async move {
            tokio::time::sleep_until(start + Duration::from_millis(event.at_ms)).await;
            world.apply(event).await;
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    for f in faults {
        let _ = f.await;
    }

    // Liveness phase: no faults. Every member must converge and hold every acknowledged write.
    // On the controller's node: healing asks the cluster for its member list.
    let healer = world.clone();
    let _ = controller.spawn(async move { healer.heal_all().await }).await;
    let checker = handle.create_node().name("checker").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1))).build();
    let history = recorder.ops();
    let acks = acknowledged_puts(&history);
    let acks_len = acks.len();
    let compacted = lock(&record).compacted;
    let live: Vec<usize> = (0..=o.members).filter(|i| !lock(&world.gone).contains(i)).collect();
    let check_world = world.clone();
    let check_live = live.clone();
    let (failure, acks_compacted) = checker
        .spawn(async move { check(&check_world, &check_live, acks, compacted).await })
        .await
        .unwrap_or_else(|_| (Some("checker panicked".into()), 0));
    let mut r = lock(&record);
    // The trace covers the history, byte for byte as written.
    let mut lines = Vec::new();
    history::write_history(&mut lines, &history).expect("writing to memory");
    r.trace(&[history.len() as u64], &String::from_utf8_lossy(&lines));
    let failure = r.failure.clone().or(failure);
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (kind, n) in o.schedule.counts() {
        counts.insert(kind.name(), n);
    }
    let fault_log = skews.into_iter().chain(r.fault_log.iter().cloned()).collect();
    Report {
        operations: history.len(),
        acknowledged_writes: acks_len,
        client_workloads,
        history,
        acks_compacted,
        faults: counts,
        fault_log,
        trace_hash: r.trace_hash,
        failure,
        simulated: start.elapsed(),
    }
}

/// The puts the history says were acknowledged: each must be in every member's history.
fn acknowledged_puts(history: &[Operation]) -> Vec<Ack> {
    history
        .iter()
        .filter_map(|op| match (&op.op, op.outcome, &op.output) {
            (OpRequest::Put(put), OpOutcome::Ok, Some(OpResponse::Put { header_revision, .. })) => Some(Ack {
                key: put.key.as_slice().to_vec(),
                value: put.value.as_slice().to_vec(),
                revision: *header_revision,
            }),
            _ => None,
        })
        .collect()
}

/// After the faults: the cluster takes writes again, every member still meant to run runs,
/// members converge to equal hashes at the same revision, and every acknowledged write is in
/// every member's history at its revision (those below the compacted revision excepted: the
/// equal hashes vouch for them). The first violation found and how many acks were compacted.
/// How many times the liveness phase asks to promote a learner that is still one.
const LIVENESS_PROMOTE_ROUNDS: usize = 5;

/// What each of `members` thinks, for a failure's report: who leads, at which term and index.
async fn member_views(members: &[usize]) -> String {
    let mut views = Vec::new();
    for &i in members {
        let view = match tokio::time::timeout(Duration::from_millis(300), MaintenanceClient::connect(client_url(i)))
            .await
        {
            Ok(Ok(mut m)) => match tokio::time::timeout(Duration::from_millis(300), m.status(StatusRequest {})).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    format!(
                        "term {} leader {:x} raft index {} applied {} learner {}",
                        r.raft_term, r.leader, r.raft_index, r.raft_applied_index, r.is_learner
                    )
                }
                Ok(Err(e)) => format!("status: {}", e.message()),
                Err(_) => "status timed out".into(),
            },
            _ => "unreachable".into(),
        };
        views.push(format!("m{}: {view}", i + 1));
    }
    views.join("; ")
}

async fn check(world: &World, candidates: &[usize], acks: Vec<Ack>, compacted: i64) -> (Option<String>, usize) {
    let removing = lock(&world.removing).clone();
    let asked: Vec<usize> =
        candidates.iter().copied().filter(|&i| !removing.contains(&i) && world.id(i) != 0).collect();
    // Progress: some write succeeds through some member.
    let mut progressed = false;
    for attempt in 0..LIVENESS_WRITES {
        let target = asked[attempt % asked.len()];
        let Ok(Ok(mut kv)) = tokio::time::timeout(Duration::from_secs(1), KvClient::connect(client_url(target))).await
        else {
            tokio::time::sleep(CONVERGE_POLL).await;
            continue;
        };
        let req =
            PutRequest { key: Bytes::from_static(b"liveness"), value: Bytes::from_static(b"ok"), ..Default::default() };
        if let Ok(Ok(_)) = tokio::time::timeout(CLIENT_OP_TIMEOUT, kv.put(req)).await {
            progressed = true;
            break;
        }
        tokio::time::sleep(CONVERGE_POLL).await;
    }
    if !progressed {
        let views = member_views(candidates).await;
        return (
            Some(format!(
                "no write succeeded in {LIVENESS_WRITES} attempts after every fault healed; members: {views}"
            )),
            0,
        );
    }
    // Who is a member now (additions and removals took effect or not): the member list says.
    let removed: Vec<usize>;
    let live: Vec<usize>;
    {
        let mut list = None;
        for &i in asked.iter().cycle().take(LIVENESS_WRITES) {
            let Ok(Ok(mut c)) =
                tokio::time::timeout(Duration::from_secs(1), ClusterClient::connect(client_url(i))).await
            else {
                continue;
            };
            let req = MemberListRequest { linearizable: true };
            if let Ok(Ok(r)) = tokio::time::timeout(CLIENT_OP_TIMEOUT, c.member_list(req)).await {
                list = Some(
                    r.into_inner().members.into_iter().map(|m| (m.id, m.is_learner)).collect::<BTreeMap<u64, bool>>(),
                );
                break;
            }
        }
        let Some(ids) = list else {
            return (Some("no member answered a linearizable member list after every fault healed".into()), 0);
        };
        removed = removing.iter().copied().filter(|&i| !ids.contains_key(&world.id(i))).collect();
        // Voters and learners alike must converge.
        live = candidates.iter().copied().filter(|&i| ids.contains_key(&world.id(i))).collect();
        // A learner answers no HashKV (etcd serves a learner's clients only Status and
        // serializable reads): the operator promotes it once it is in sync, then it is compared
        // like every voter.
        // A leader that has not yet applied the learner's addition answers "member not found":
        // ask again while the member list still calls it a learner.
        for &i in &live {
            let id = world.id(i);
            let mut learner = ids.get(&id) == Some(&true);
            for _ in 0..LIVENESS_PROMOTE_ROUNDS {
                if !learner {
                    break;
                }
                let _one_at_a_time = world.membership.lock().await;
                world.promote_member(i).await;
                learner =
                    world.member_list().await.is_none_or(|(_, list)| list.iter().any(|m| m.id == id && m.is_learner));
            }
        }
    }
    let live = &live[..];
    let mut agreed = false;
    let mut last = String::new();
    for _ in 0..CONVERGE_ATTEMPTS_MAX {
        tokio::time::sleep(CONVERGE_POLL).await;
        let mut hashes = Vec::new();
        let mut refusal = String::new();
        for &i in live {
            let Ok(Ok(mut m)) =
                tokio::time::timeout(Duration::from_secs(1), MaintenanceClient::connect(client_url(i))).await
            else {
                break;
            };
            match tokio::time::timeout(Duration::from_secs(1), m.hash_kv(HashKvRequest { revision: 0 })).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    hashes.push((r.header.map_or(0, |h| h.revision), r.hash));
                }
                Ok(Err(e)) => {
                    refusal = format!("; m{}: {}", i + 1, e.message());
                    break;
                }
                Err(_) => {
                    refusal = format!("; m{}: HashKV timed out", i + 1);
                    break;
                }
            }
        }
        last = format!("{hashes:?}{refusal}");
        if hashes.len() == live.len() && hashes.windows(2).all(|w| w[0] == w[1]) {
            agreed = true;
            break;
        }
    }
    for &i in live {
        if let Some(exit) = world.exit_of(i) {
            return (Some(format!("m{} is not running after the faults: {exit}", i + 1)), 0);
        }
    }
    for &i in &removed {
        // etcd's removed member stops (it learns of it from the entry, or from its peers, which
        // it hears from at its next election timeout at the latest).
        if !world.wait_for(REMOVED_STOP_MS_MAX, || world.exit_of(i).is_some()).await {
            return (Some(format!("m{} was removed from the cluster but still runs", i + 1)), 0);
        }
    }
    if !agreed {
        let members: Vec<String> = live.iter().map(|i| format!("m{}", i + 1)).collect();
        let views = member_views(live).await;
        return (
            Some(format!(
                "members did not converge to equal hashes: (revision, hash) of {members:?}: {last}; members: {views}"
            )),
            0,
        );
    }
    let mut skipped = 0;
    // One member suffices: the others' HashKV at the same revision is equal to its own, and
    // HashKV covers every version of every key since the compaction, not only the latest.
    for &i in &live[..1] {
        let Ok(mut kv) = KvClient::connect(client_url(i)).await else {
            return (Some(format!("cannot reach m{} after the faults", i + 1)), skipped);
        };
        for ack in &acks {
            if ack.revision < compacted {
                skipped += 1;
                continue;
            }
            let req = RangeRequest {
                key: Bytes::from(ack.key.clone()),
                revision: ack.revision,
                serializable: true,
                ..Default::default()
            };
            let got = match kv.range(req).await {
                Ok(r) => r.into_inner().kvs.into_iter().next().map(|kv| (kv.value, kv.mod_revision)),
                Err(e) => {
                    let key = String::from_utf8_lossy(&ack.key);
                    return (Some(format!("m{}: reading {key} at {}: {e}", i + 1, ack.revision)), skipped);
                }
            };
            if got != Some((Bytes::from(ack.value.clone()), ack.revision)) {
                return (
                    Some(format!(
                        "m{} lost acknowledged write {}={} at revision {}: found {got:?}",
                        i + 1,
                        String::from_utf8_lossy(&ack.key),
                        String::from_utf8_lossy(&ack.value),
                        ack.revision
                    )),
                    skipped,
                );
            }
        }
    }
    (None, skipped)
}

/// Reads a schedule file.
pub fn read_schedule(path: &Path) -> Result<Schedule, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.parse().map_err(|e| format!("{}: {e}", path.display()))
}
