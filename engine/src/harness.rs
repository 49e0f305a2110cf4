//! A deterministic in-process cluster of [`Node`]s, for tests and benchmarks.
//!
//! Everything a real deployment leaves to chance is drawn here from one seed: message delays and
//! losses, partitions, disk latency, crash points. Time is virtual: the cluster jumps from one
//! event to the next (a message arrives, a persist completes, a node's timeout is due), so a
//! minute of cluster time costs milliseconds. A crash loses every persist not yet completed —
//! exactly what an un-fsynced write would lose — and a restart rebuilds the node from what its
//! disk holds.
//!
//! ```text
//! let mut c = Cluster::new(3, seed);
//! let leader = c.wait_for_leader();
//! c.partition(&[leader], &others);
//! c.put(other, "k", "v")?;
//! ```
//!
//! Checked after every event: each node's `invariants()`, and that no two members are leader in
//! the same term.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use detcd_proto::etcdserverpb::{PutRequest, RangeRequest, WatchRequest, WatchResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::node::{Config, Node, Output, Persist, Recovered, Request, RequestId, Response};
use crate::raft::{Entry, HardState, Message, Snapshot, StateRole};
use crate::time::{Duration, Instant};
use crate::Error;

/// What survived on one member's disk: every completed persist and every snapshot written.
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

impl Disk {
    /// Applies a completed persist, as a disk that synced it holds it.
    pub fn apply(&mut self, p: &Persist) {
        if let Some(s) = &p.snapshot {
            self.entries.clear();
            self.snapshot = Some(s.clone());
        }
        if let Some(first) = p.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(p.entries.iter().cloned());
        }
        if let Some(hs) = &p.hard_state {
            self.hard_state = hs.clone();
        }
    }

    /// Stores the node's own snapshot; the log before `log_kept_from` goes.
    pub fn save_snapshot(&mut self, snapshot: &Snapshot, log_kept_from: u64) {
        self.snapshot = Some(snapshot.clone());
        self.entries.retain(|e| e.index >= log_kept_from);
    }

    /// What a member restarting from this disk finds.
    pub fn recovered(&self) -> Recovered {
        Recovered {
            hard_state: self.hard_state.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

struct Member {
    node: Option<Node>,
    disk: Disk,
    /// Persists handed to the disk and not yet durable, with when they will be.
    unsynced: VecDeque<(Instant, Persist)>,
    responses: BTreeMap<RequestId, Result<Response, Error>>,
    boots: u64,
}

impl Member {
    /// A member with an empty disk, not started.
    fn empty() -> Member {
        Member { node: None, disk: Disk::default(), unsynced: VecDeque::new(), responses: BTreeMap::new(), boots: 0 }
    }
}

/// Knobs of the simulated network and disk.
#[derive(Debug, Clone)]
pub struct Faults {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Probability that a message is lost, in parts per million.
    pub drop_ppm: u32,
    pub disk_latency: Duration,
    /// Members whose disk takes longer than `disk_latency` to sync.
    pub slow_disks: BTreeMap<u64, Duration>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            min_delay: Duration::from_micros(200),
            max_delay: Duration::from_millis(2),
            drop_ppm: 0,
            disk_latency: Duration::from_micros(500),
            slow_disks: BTreeMap::new(),
        }
    }
}

pub struct Cluster {
    now: Instant,
    seed: u64,
    rng: StdRng,
    configs: BTreeMap<u64, Config>,
    members: BTreeMap<u64, Member>,
    /// In flight: (arrival time, sequence) → message. The sequence keeps equal times ordered.
    network: BTreeMap<(Instant, u64), Message>,
    sequence: u64,
    /// Directed links that drop everything.
    cut: BTreeSet<(u64, u64)>,
    /// Members frozen (a GC pause, a stopped VM): no timeouts, no persists completing, and
    /// messages to them wait in the network until they resume.
    paused: BTreeSet<u64>,
    pub faults: Faults,
    next_request_id: RequestId,
    leaders_by_term: BTreeMap<u64, u64>,
    /// FNV-1a over every output of every node, in order: equal for equal seeds.
    trace_hash: u64,
    events: u64,
}

impl Cluster {
    /// `n` founding members with ids 1..=n and etcd's default timing.
    pub fn new(n: u64, seed: u64) -> Cluster {
        let voters: Vec<u64> = (1..=n).collect();
        let configs = voters.iter().map(|&id| (id, Config::new(id, voters.clone()))).collect();
        Cluster::with_configs(configs, seed)
    }

    pub fn with_configs(configs: BTreeMap<u64, Config>, seed: u64) -> Cluster {
        let mut cluster = Cluster {
            now: Instant::from_nanos(1_000_000_000),
            seed,
            rng: StdRng::seed_from_u64(seed),
            configs,
            members: BTreeMap::new(),
            network: BTreeMap::new(),
            sequence: 0,
            cut: BTreeSet::new(),
            paused: BTreeSet::new(),
            faults: Faults::default(),
            next_request_id: 1,
            leaders_by_term: BTreeMap::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
        };
        for id in cluster.configs.keys().copied().collect::<Vec<_>>() {
            cluster.members.insert(id, Member::empty());
            cluster.start(id);
        }
        cluster
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members.keys().copied().collect()
    }

    pub fn node(&self, id: u64) -> Option<&Node> {
        self.members.get(&id).and_then(|m| m.node.as_ref())
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.node(id).is_some()
    }

    pub fn trace_hash(&self) -> u64 {
        self.trace_hash
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    // ---- faults ---------------------------------------------------------------------------

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, a: &[u64], b: &[u64]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut_link(&mut self, from: u64, to: u64) {
        self.cut.insert((from, to));
    }

    pub fn isolate(&mut self, id: u64) {
        let others: Vec<u64> = self.ids().into_iter().filter(|&x| x != id).collect();
        self.partition(&[id], &others);
    }

    /// Freezes member `id` until [`Cluster::resume`].
    pub fn pause(&mut self, id: u64) {
        self.paused.insert(id);
    }

    pub fn resume(&mut self, id: u64) {
        self.paused.remove(&id);
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Starts a new, empty member `id` that joins the cluster (it must have been added with a
    /// MemberAdd first; it learns everything from the leader, by snapshot).
    pub fn add_node(&mut self, id: u64) {
        assert!(!self.members.contains_key(&id), "member {id} exists");
        self.configs.insert(id, Config::new(id, Vec::new()));
        self.members.insert(id, Member::empty());
        self.start(id);
    }

    /// Kills a member: its in-flight persists are lost, as un-fsynced writes are.
    pub fn crash(&mut self, id: u64) {
        let member = self.members.get_mut(&id).expect("known member");
        member.node = None;
        member.unsynced.clear();
        member.responses.clear();
    }

    /// Starts a crashed member from its disk.
    pub fn restart(&mut self, id: u64) {
        assert!(!self.is_up(id), "member {id} is running");
        self.start(id);
    }

    fn start(&mut self, id: u64) {
        let member = self.members.get_mut(&id).expect("known member");
        member.boots += 1;
        let seed = self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ member.boots.rotate_left(32);
        let node = Node::new(self.configs[&id].clone(), member.disk.recovered(), seed, self.now)
            .unwrap_or_else(|e| panic!("member {id} cannot start from its disk: {e}"));
        member.node = Some(node);
        self.pump(id);
    }

    // ---- clients --------------------------------------------------------------------------

    /// Sends a request to member `id`; the answer is collected by [`Cluster::wait`].
    pub fn request(&mut self, id: u64, request: Request) -> RequestId {
        self.request_as(id, crate::auth::Caller::Internal, request)
    }

    /// [`Cluster::request`] from a client, checked against auth as `caller`.
    pub fn request_as(&mut self, id: u64, caller: crate::auth::Caller, request: Request) -> RequestId {
        let rid = self.next_request_id;
        self.next_request_id += 1;
        let now = self.now;
        if let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) {
            node.handle_request_as(now, rid, caller, request);
            self.pump(id);
        }
        rid
    }

    /// Runs until member `id` answers `rid`, or `max` passes (`None`), or it crashes (`None`).
    pub fn wait(&mut self, id: u64, rid: RequestId, max: Duration) -> Option<Result<Response, Error>> {
        let deadline = self.now + max;
        loop {
            if let Some(r) = self.members.get_mut(&id).and_then(|m| m.responses.remove(&rid)) {
                return Some(r);
            }
            if !self.is_up(id) || !self.step_until(deadline) {
                return None;
            }
        }
    }

    /// Takes every answer member `id` has given so far (for clients that pipeline).
    pub fn take_responses(&mut self, id: u64) -> Vec<(RequestId, Result<Response, Error>)> {
        self.members.get_mut(&id).map_or_else(Vec::new, |m| std::mem::take(&mut m.responses).into_iter().collect())
    }

    pub fn has_responses(&self, id: u64) -> bool {
        self.members.get(&id).is_some_and(|m| !m.responses.is_empty())
    }

    /// Member `id`'s disk.
    pub fn disk(&self, id: u64) -> &Disk {
        &self.members[&id].disk
    }

    /// [`Cluster::call`] from a client, checked against auth as `caller`.
    pub fn call_as(
        &mut self,
        id: u64,
        caller: crate::auth::Caller,
        request: Request,
    ) -> Option<Result<Response, Error>> {
        let max = self.configs[&id].request_timeout * 2;
        let rid = self.request_as(id, caller, request);
        self.wait(id, rid, max)
    }

    /// Requests and waits up to twice the request timeout.
    pub fn call(&mut self, id: u64, request: Request) -> Option<Result<Response, Error>> {
        let max = self.configs[&id].request_timeout * 2;
        let rid = self.request(id, request);
        self.wait(id, rid, max)
    }

    pub fn put(&mut self, id: u64, key: &str, value: &str) -> Option<Result<Response, Error>> {
        let req = PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Default::default()
        };
        self.call(id, Request::Put(req))
    }

    /// A linearizable (or, with `serializable`, local) read of one key's value.
    pub fn get(&mut self, id: u64, key: &str, serializable: bool) -> Option<Result<Option<Bytes>, Error>> {
        let req = RangeRequest { key: Bytes::copy_from_slice(key.as_bytes()), serializable, ..Default::default() };
        self.call(id, Request::Range(req)).map(|r| {
            r.map(|resp| match resp {
                Response::Range(r) => r.kvs.into_iter().next().map(|kv| kv.value),
                other => panic!("range answered with {other:?}"),
            })
        })
    }

    /// Sends a request on watch stream `stream` of member `id`.
    pub fn watch(&mut self, id: u64, stream: u64, request: WatchRequest) {
        self.watch_as(id, stream, &crate::auth::Caller::Internal, request)
    }

    /// [`Cluster::watch`] on a stream of client `caller` (auth).
    pub fn watch_as(&mut self, id: u64, stream: u64, caller: &crate::auth::Caller, request: WatchRequest) {
        let now = self.now;
        if let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) {
            assert!(node.watch_accepts(stream), "stream {stream} of member {id} is full");
            node.watch_request_as(now, stream, caller, &request);
            self.pump(id);
        }
    }

    /// Every response queued on watch stream `stream` of member `id` (a client that reads).
    pub fn watch_responses(&mut self, id: u64, stream: u64) -> Vec<WatchResponse> {
        let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) else { return Vec::new() };
        std::iter::from_fn(|| node.watch_poll(stream)).collect()
    }

    // ---- running --------------------------------------------------------------------------

    /// The member that is leader in the highest term, if any.
    pub fn leader(&self) -> Option<u64> {
        self.members
            .iter()
            .filter_map(|(&id, m)| m.node.as_ref().filter(|n| n.role() == StateRole::Leader).map(|n| (n.term(), id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Runs until a leader is elected that every running member follows; panics after a minute
    /// of cluster time.
    pub fn wait_for_leader(&mut self) -> u64 {
        let ok = self.run_until(Duration::from_secs(60), |c| {
            c.leader().is_some_and(|l| c.members.values().filter_map(|m| m.node.as_ref()).all(|n| n.leader_id() == l))
        });
        assert!(ok, "no leader after 60 s (seed {})", self.seed);
        self.leader().expect("checked")
    }

    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now + d;
        while self.step_until(deadline) {}
        self.now = self.now.max(deadline);
    }

    /// Runs until `done` holds (checked after every event) or `max` passes.
    pub fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Cluster) -> bool) -> bool {
        let deadline = self.now + max;
        loop {
            if done(self) {
                return true;
            }
            if !self.step_until(deadline) {
                return done(self);
            }
        }
    }

    /// Processes the next event if it is due by `deadline`; false if none is.
    fn step_until(&mut self, deadline: Instant) -> bool {
        let paused = &self.paused;
        let next_message_key = self.network.iter().find(|(_, m)| !paused.contains(&m.to)).map(|(k, _)| *k);
        let next_message = next_message_key.map(|(t, _)| t);
        let running = self.members.iter().filter(|(id, _)| !paused.contains(id)).map(|(_, m)| m);
        let next_persist = running.clone().filter_map(|m| m.unsynced.front().map(|(t, _)| *t)).min();
        let next_timeout = running.filter_map(|m| m.node.as_ref().map(|n| n.poll_timeout())).min();
        let Some(next) = [next_message, next_persist, next_timeout].into_iter().flatten().min() else {
            return false;
        };
        if next > deadline {
            return false;
        }
        self.now = self.now.max(next);
        self.events += 1;
        let now = self.now;
        // Messages first, then completed persists, then timeouts: a fixed order keeps runs equal.
        if next_message == Some(next) {
            let message = self.network.remove(&next_message_key.expect("checked")).expect("checked");
            let to = message.to;
            if let Some(node) = self.members.get_mut(&to).and_then(|m| m.node.as_mut()) {
                node.handle_message(now, message);
                self.pump(to);
            }
        } else if next_persist == Some(next) {
            let id = *self
                .members
                .iter()
                .find(|(id, m)| !self.paused.contains(id) && m.unsynced.front().is_some_and(|(t, _)| *t == next))
                .expect("checked")
                .0;
            let member = self.members.get_mut(&id).expect("known");
            let (_, persist) = member.unsynced.pop_front().expect("checked");
            member.disk.apply(&persist);
            member.node.as_mut().expect("a member with unsynced writes is up").handle_persisted(now, persist.token);
            self.pump(id);
        } else {
            let id = *self
                .members
                .iter()
                .find(|(id, m)| !self.paused.contains(id) && m.node.as_ref().is_some_and(|n| n.poll_timeout() == next))
                .expect("checked")
                .0;
            self.members.get_mut(&id).and_then(|m| m.node.as_mut()).expect("up").handle_timeout(now);
            self.pump(id);
        }
        self.check();
        true
    }

    /// Carries out every output of member `id`.
    fn pump(&mut self, id: u64) {
        loop {
            let Some(node) = self.members.get_mut(&id).and_then(|m| m.node.as_mut()) else {
                return;
            };
            let Some(output) = node.poll_output() else {
                return;
            };
            self.trace(id, &output);
            match output {
                Output::Send(message) => {
                    let lost = self.cut.contains(&(id, message.to))
                        || (self.faults.drop_ppm > 0 && self.rng.gen_range(0..1_000_000) < self.faults.drop_ppm);
                    if !lost {
                        let delay = self.rng.gen_range(self.faults.min_delay..=self.faults.max_delay);
                        self.sequence += 1;
                        self.network.insert((self.now + delay, self.sequence), message);
                    }
                }
                Output::Persist(persist) => {
                    let latency = self.faults.slow_disks.get(&id).copied().unwrap_or(self.faults.disk_latency);
                    let member = self.members.get_mut(&id).expect("known");
                    member.unsynced.push_back((self.now + latency, persist));
                }
                Output::Snapshot { snapshot, log_kept_from } => {
                    self.members.get_mut(&id).expect("known").disk.save_snapshot(&snapshot, log_kept_from);
                }
                Output::Respond { id: rid, result } => {
                    self.members.get_mut(&id).expect("known").responses.insert(rid, result);
                }
            }
        }
    }

    fn trace(&mut self, id: u64, output: &Output) {
        let mut words = vec![id, self.now.as_nanos()];
        match output {
            Output::Send(m) => {
                words.extend([1, m.to, m.get_msg_type() as u64, m.term, m.index, m.commit, m.entries.len() as u64])
            }
            Output::Persist(p) => words.extend([
                2,
                p.token,
                p.entries.last().map_or(0, |e| e.index),
                p.hard_state.as_ref().map_or(0, |h| h.commit),
            ]),
            Output::Snapshot { snapshot, .. } => words.extend([3, snapshot.get_metadata().index]),
            Output::Respond { id, result } => {
                words.extend([4, *id, result.as_ref().map_or_else(|e| *e as u64 + 1_000_000, |r| r.revision() as u64)])
            }
        }
        for w in words {
            for b in w.to_le_bytes() {
                self.trace_hash ^= b as u64;
                self.trace_hash = self.trace_hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }

    fn check(&mut self) {
        for (&id, member) in &self.members {
            let Some(node) = &member.node else { continue };
            node.invariants();
            if node.role() == StateRole::Leader {
                let first = *self.leaders_by_term.entry(node.term()).or_insert(id);
                assert_eq!(first, id, "two leaders in term {}: {first} and {id} (seed {})", node.term(), self.seed);
            }
        }
    }
}
