//! Linearizability: the Wing–Gong search with Lowe's memoisation, as in porcupine.
//!
//! A history is linearizable when each operation can be given one instant between its call and
//! its return such that running the operations one after another in that order, on the
//! sequential [`Model`], gives every operation the output the client saw.
//!
//! # The search
//!
//! Every operation becomes a call entry and a return entry, sorted by time (a call before a
//! return at the same instant, so operations that merely touch count as concurrent) and threaded
//! on a doubly linked list. Walking the list from the front, each call met before the first
//! return is a candidate to be linearized next: if the model accepts it, it is pushed on a stack
//! with the state before it, its two entries are unlinked (dancing links) and the walk restarts
//! at the front. Meeting a return means the operation it closes should already have been
//! linearized: pop the stack, relink, restore the state and try the next candidate after the one
//! popped. The history is linearizable when every operation is on the stack, and not when the
//! stack is empty at a return.
//!
//! Lowe's cache: the future of the search depends only on which operations are linearized and
//! the model state, so each (bitset of linearized operations, state) reached is remembered and
//! never explored twice. The state is remembered by a 128-bit fingerprint of its hash, not kept:
//! storing and later freeing a copy of every state reached was a third of the search's time on
//! the etcd model. Two distinct states with one fingerprint (about n²/2¹²⁹ for n entries, 10⁻²⁶
//! for a million) could only prune a branch that might have succeeded — a wrong "not
//! linearizable", never a violation hidden. Porcupine's notes: it turns exponential blow-ups into polynomial ones in
//! practice, and partitioning (P-compositionality) does the rest: a history is linearizable iff
//! each of its [`Model::partition`]s is, and many small searches are far cheaper than one big one.
//!
//! # Indeterminate operations
//!
//! An operation without a return ([`Op::return_ns`] `None`: a timeout, "indeterminate") may have
//! taken effect at any instant after its call, or never, and the model accepts any output for
//! it. As in porcupine (which records Jepsen's `:info` operations with a return at the end of
//! time), it has no return entry: it stays a candidate until the end. "Never" needs nothing
//! more: the search stops successfully as soon as every operation with a return is linearized,
//! since indeterminate operations left over can be put last, after everything that could have
//! observed them (or not at all). Three things keep them from multiplying the work, none of
//! which removes a candidate that could succeed:
//!
//! - an indeterminate operation is not placed where it would change nothing (a compare that
//!   fails, a delete of nothing): a linearization with it there is one without it, searched
//!   anyway; and read-only ones ([`Model::is_read_only`]) are dropped before the search;
//! - a model can declare a branch dead as soon as some pending operation can never be accepted
//!   any more ([`Model::cannot_follow`]: etcd's revision never goes down);
//! - they are tried before or after the determinate candidates, as the model finds faster
//!   ([`Model::INDETERMINATE_FIRST`]), latest call first.
//!
//! # Interchangeable indeterminate operations
//!
//! Indeterminate writes whose values nobody saw multiply the search: with k of them pending, the
//! search may try each of the 2^k subsets of them as "happened so far", and the cache cannot merge
//! the branches, which differ in the linearized set (and in the value stored). The caller can
//! say that some indeterminate operations are *interchangeable* ([`Op::interchangeable`]): no
//! other operation of the history can tell one from the other once it took effect (for etcd:
//! puts of the same key and lease whose values nobody ever saw). Then, of two interchangeable
//! operations, the one called later is never placed while the one called earlier is still
//! pending. No verdict changes: a linearization that places the later one `b` while the earlier
//! one `a` is pending becomes, by swapping the two, one that places `a` there (it was called
//! earlier, so it is a candidate wherever `b` is) and `b` wherever `a` was placed (if at all:
//! after `b`'s placement, so after its call), and no other operation can tell the two apart. So
//! of each class only how many took effect so far matters, not which: k + 1 branches, not 2^k.
//!
//! An operation known to have happened but whose output is unknown has a return and no output
//! (the front end pins an indeterminate write so when a response shows its value: see
//! [`crate::check`]).
//!
//! Operations that certainly failed are the caller's to drop: they are not operations here.
//!
//! # Limits
//!
//! The search is exponential in the worst case. What makes it so in practice is a violation deep
//! in a long history that is not partitioned (the etcd model, or one busy register), together with
//! indeterminate writes whose values nobody ever saw: to prove there is no linearization, every
//! way of placing those writes before the violation is tried, and each choice of which of them
//! took effect is a different branch. On the generated histories of the benchmark (3% of writes
//! indeterminate) a stale read in the middle of 2,000 etcd operations is found in about 0.1 s,
//! but in the middle of 10,000 it exhausts the budget; linearizable histories of 10,000 check in
//! under a second. An exhausted budget gives [`Verdict::Unknown`], a failure: never a pass.
//!
//! # Budget
//!
//! The search is exponential in the worst case, so it runs under a time budget; running out gives
//! [`Verdict::Unknown`], never [`Verdict::Linearizable`]: a checker that times out has not shown
//! anything, and CI treats Unknown as a failure. The result is otherwise deterministic: partitions
//! are searched in key order and candidates in entry order.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

/// A sequential specification.
///
/// `step` must be a pure function of its arguments: the search calls it many times on the same
/// state, in any order, and caches its results by a fingerprint of the state's hash.
pub trait Model {
    /// What was asked.
    type Input;
    /// What was answered.
    type Output;
    /// The model's state. Two states must be equal exactly when no sequence of operations can
    /// tell them apart, and the hash must cover everything equality compares: the cache tells
    /// states apart by their hash alone (else it prunes too much, or too little).
    type State: Clone + Eq + Hash;
    /// Operations with different keys never interact: the history is linearizable iff each
    /// sub-history of one key is. A model that cannot be partitioned uses `()`.
    type PartitionKey: Ord + Clone;

    fn init(&self) -> Self::State;

    /// Applies `input` to `state`. With `Some(output)`, returns the next state if the model
    /// could have answered `output` here, else `None`. With `None` (an indeterminate operation)
    /// any output is accepted: return the state after the operation's effect. (A model may still
    /// refuse an indeterminate operation in a state where it cannot take effect at all; the search
    /// then places it elsewhere, or nowhere.)
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;

    /// Whether [`Model::step_before`] needs its time bound; the search computes it only then.
    fn is_timed(&self) -> bool {
        false
    }

    /// [`Model::step`] for a model whose operations may depend on time (etcd's lease expiry):
    /// `window` is (the operation's call, the latest instant it can take effect at given where
    /// the search places it: the earliest return among the operations not yet linearized, which
    /// all come after it; `u64::MAX` when there is none or the model is not timed).
    fn step_before(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
        _window: (u64, u64),
    ) -> Option<Self::State> {
        self.step(state, input, output)
    }

    /// The partition an operation belongs to.
    fn partition(&self, input: &Self::Input) -> Self::PartitionKey;

    /// Whether the operation can never change the state; indeterminate ones are then dropped.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// Whether the model implements [`Model::cannot_follow`]; the search skips the calls
    /// otherwise.
    const PRUNES: bool = false;

    /// The order in which the search tries candidates: indeterminate operations before the
    /// determinate ones (porcupine's order, since they are called early), or after. Both are
    /// complete; which is faster depends on how soon a wrong choice shows. Without
    /// [`Model::cannot_follow`] a missing indeterminate write shows only at a later read, after a
    /// long detour, so placing indeterminate operations early is better (per-key registers).
    /// With it, a wrongly placed indeterminate write dies at once, and trying the determinate
    /// candidates first saves trying every pending indeterminate operation at every step (etcd).
    const INDETERMINATE_FIRST: bool = true;

    /// `true` only if no sequence of steps from `state` can lead to a state in which the
    /// (determinate) operation is accepted: then the branch of the search that reached `state` is
    /// dead, since that operation must be linearized some time. For etcd: the revision never goes
    /// down, so a state past an operation's header revision can never accept it.
    ///
    /// Must be sound (a wrong `true` hides linearizations); it needs not be complete. It is what
    /// keeps indeterminate writes cheap: without it the search, at every point, tries every order
    /// of the indeterminate writes still pending before finding out that none fits.
    fn cannot_follow(&self, _state: &Self::State, _input: &Self::Input, _output: &Self::Output) -> bool {
        false
    }

    /// For a model whose states carry a count that never goes down (etcd's revision,
    /// [`Model::progress`]): the highest count of a state that can still accept the (determinate)
    /// operation, if there is one. The search keeps the lowest ceiling among the operations not
    /// yet linearized and abandons a branch as soon as its state is past it, since that operation
    /// must be linearized some time. This is [`Model::cannot_follow`] for every pending operation
    /// at once, not only for those called before the first pending return: without it, an
    /// operation whose answer constrains nothing (an etcd keepalive, whose header is not checked)
    /// standing first let the search stack any number of indeterminate writes before it, every
    /// order of them, while operations called just after could already tell that the revision had
    /// gone too far. Must be sound, like `cannot_follow`.
    fn ceiling(&self, _input: &Self::Input, _output: &Self::Output) -> Option<i64> {
        None
    }

    /// The count of [`Model::ceiling`]; it must never go down from a state to the next.
    fn progress(&self, _state: &Self::State) -> i64 {
        i64::MIN
    }

    fn describe_partition(&self, key: &Self::PartitionKey) -> String;

    /// One line: the input and, when known, the output.
    fn describe_operation(&self, input: &Self::Input, output: Option<&Self::Output>) -> String;

    fn describe_state(&self, state: &Self::State) -> String;
}

/// One operation of a history, as the checker sees it.
#[derive(Clone, Debug)]
pub struct Op<I, O> {
    /// The caller's id for the operation; reports use it.
    pub id: usize,
    pub client: u64,
    pub call_ns: u64,
    /// `Some(t)`: it took effect, at some instant in `[call_ns, t]`. `None`: indeterminate: it
    /// may have taken effect at any instant after its call, or never.
    pub return_ns: Option<u64>,
    pub input: I,
    /// What it returned; `None`: unknown, any output is accepted. (Always `None` when
    /// `return_ns` is; an operation known to have happened may also have an unknown output.)
    pub output: Option<O>,
    /// For an indeterminate operation: its class of interchangeable operations, if the caller
    /// knows one (see "Interchangeable indeterminate operations" in the module docs). `None`:
    /// it is like no other.
    pub interchangeable: Option<u64>,
}

/// An operation of `M`'s history.
pub type ModelOp<M> = Op<<M as Model>::Input, <M as Model>::Output>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Wall-clock time for the whole search, over all partitions.
    pub budget_ms: u64,
    /// Memory for the cache of (linearized set, state fingerprint) pairs of one partition,
    /// estimated (bitsets and fingerprints). The cache is what grows when a search
    /// blows up, and it would otherwise grow until the machine kills the process; running out
    /// gives Unknown, like the time budget. The estimate leaves out the hash table's own
    /// overhead: measured peak memory runs about 1.5 times this.
    pub cache_budget_mib: u64,
    /// Search steps allowed over all partitions. Unlike the wall-clock budget it runs out at
    /// the same point on every machine and under any load, so a simulator run that ends
    /// Unknown by steps ends so again when replayed (`u64::MAX`: no limit).
    pub step_budget: u64,
    /// For the etcd model: how far a leader's lease clock may run ahead of the history's clock
    /// by drift ([`crate::models::etcd::EtcdModel::lease_clock`]); 0 for sound clocks.
    pub lease_clock_slack_ms: u64,
    /// For the etcd model: the servers' clock jumps, if known; a lease renewed at `r` may expire
    /// early by the slack above plus the jumps of one server at or after `r`.
    pub lease_clock_jumps: Vec<crate::models::ClockJump>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            budget_ms: 60_000,
            cache_budget_mib: 2_048,
            step_budget: u64::MAX,
            lease_clock_slack_ms: 0,
            lease_clock_jumps: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Violation),
    /// The budget ran out before a verdict; this is not a pass.
    Unknown {
        /// Which budget: the time budget depends on the machine and its load, the others
        /// run out at the same point on every run.
        budget: Budget,
        reason: String,
    },
}

/// The budgets of [`CheckOptions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    Time,
    Memory,
    Steps,
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Where a search failed: the longest linearizable prefix it found in the partition, and the
/// operations none of which could follow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// [`Model::describe_partition`] of the partition that is not linearizable.
    pub partition: String,
    /// Ids of the longest sequence of operations the search could linearize, in order.
    pub longest_prefix: Vec<usize>,
    /// [`Model::describe_state`] after that prefix.
    pub state_after_prefix: String,
    /// [`Model::describe_state`] after each operation of the prefix from index
    /// `prefix_states_from` on (the last [`PREFIX_STATES_KEPT`] of them), for reports.
    pub prefix_states: Vec<String>,
    pub prefix_states_from: usize,
    /// The determinate operations that could come next after that prefix (their calls precede
    /// the first return still pending), none of which led to a full linearization; among them the
    /// one with the earliest return, which had to be linearized by then. (Indeterminate operations
    /// called before that return could also have come next; they are not listed.)
    pub involved: Vec<InvolvedOp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvolvedOp {
    pub id: usize,
    pub client: u64,
    pub call_ns: u64,
    /// `None`: indeterminate.
    pub return_ns: Option<u64>,
    pub description: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not linearizable in partition {}", self.partition)?;
        let prefix: Vec<String> = self.longest_prefix.iter().map(|id| id.to_string()).collect();
        writeln!(f, "  longest linearizable prefix ({} ops): [{}]", self.longest_prefix.len(), prefix.join(", "))?;
        writeln!(f, "  state after it: {}", self.state_after_prefix)?;
        writeln!(f, "  none of these can come next:")?;
        for op in &self.involved {
            let ret = op.return_ns.map_or("indeterminate".to_string(), |r| r.to_string());
            writeln!(f, "    op {} client {} [{} .. {}] {}", op.id, op.client, op.call_ns, ret, op.description)?;
        }
        Ok(())
    }
}

/// How many states along the longest linearizable prefix a [`Violation`] keeps (the last ones).
pub const PREFIX_STATES_KEPT: usize = 1_000;

/// Counters of one check, for benchmarks and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub partitions: usize,
    /// Operations searched (indeterminate read-only ones excluded).
    pub ops: usize,
    /// Calls of [`Model::step`].
    pub steps: u64,
    /// (linearized set, state) pairs remembered.
    pub cache_entries: u64,
    /// Their estimated size, in the largest partition.
    pub cache_bytes_max: u64,
    pub elapsed: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub verdict: Verdict,
    pub stats: Stats,
}

/// Checks a history against `model`. Partitions are searched one after another in key order; the
/// first that is not linearizable gives the verdict. An exhausted budget gives Unknown, unless a
/// partition already searched is not linearizable.
pub fn check<M: Model>(model: &M, ops: Vec<Op<M::Input, M::Output>>, options: &CheckOptions) -> CheckResult {
    let started = Instant::now();
    let deadline = started + Duration::from_millis(options.budget_ms);
    let mut partitions: BTreeMap<M::PartitionKey, Vec<ModelOp<M>>> = BTreeMap::new();
    for op in ops {
        assert!(op.return_ns.is_some() || op.output.is_none(), "op {}: an output but no return", op.id);
        // Read-only and any output accepted: it fits anywhere, so it says nothing.
        if op.output.is_none() && model.is_read_only(&op.input) {
            continue;
        }
        partitions.entry(model.partition(&op.input)).or_default().push(op);
    }
    let mut stats = Stats { partitions: partitions.len(), ..Stats::default() };
    let partition_count = partitions.len();
    for (index, (key, ops)) in partitions.into_iter().enumerate() {
        stats.ops += ops.len();
        let mut search = Search::new(model, ops);
        let cache_bytes_max = options.cache_budget_mib.saturating_mul(1 << 20);
        let steps_left = options.step_budget.saturating_sub(stats.steps);
        let outcome = search.run(deadline, cache_bytes_max, steps_left);
        stats.steps += search.steps;
        stats.cache_entries += search.cache_entries;
        stats.cache_bytes_max = stats.cache_bytes_max.max(search.cache_bytes);
        match outcome {
            SearchOutcome::Linearizable => {}
            SearchOutcome::NotLinearizable => {
                let violation = search.violation(model, &key);
                stats.elapsed = started.elapsed();
                return CheckResult { verdict: Verdict::NotLinearizable(violation), stats };
            }
            SearchOutcome::OutOfTime | SearchOutcome::OutOfMemory | SearchOutcome::OutOfSteps => {
                stats.elapsed = started.elapsed();
                let (budget, described) = match outcome {
                    SearchOutcome::OutOfTime => (Budget::Time, format!("time budget of {} ms", options.budget_ms)),
                    SearchOutcome::OutOfSteps => {
                        (Budget::Steps, format!("step budget of {} steps", options.step_budget))
                    }
                    _ => (Budget::Memory, format!("cache memory budget of {} MiB", options.cache_budget_mib)),
                };
                let reason = format!(
                    "the {described} ran out while searching partition {} ({} of {} partitions done)",
                    model.describe_partition(&key),
                    index,
                    partition_count
                );
                return CheckResult { verdict: Verdict::Unknown { budget, reason }, stats };
            }
        }
    }
    stats.elapsed = started.elapsed();
    CheckResult { verdict: Verdict::Linearizable, stats }
}

const NIL: u32 = u32::MAX;
/// The head of the list of determinate calls and returns, in time order.
const MAIN_HEAD: u32 = 0;
/// The head of the list of indeterminate calls, latest call first.
const INDETERMINATE_HEAD: u32 = 1;
/// Reading the clock costs more than a step of a simple model: look at it every so many steps.
const STEPS_PER_CLOCK_CHECK: u64 = 1 << 10;

/// An entry of one of the two lists. Node indices after the heads follow the sorted order of
/// all entries, so `a < b` means entry `a` comes before entry `b` in time.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Index of the operation in the partition; unused for the heads.
    op: u32,
    /// For a determinate call: its return node. `NIL` otherwise.
    return_node: u32,
    is_call: bool,
    prev: u32,
    next: u32,
}

/// Where the walk over the candidates is.
#[derive(Clone, Copy, Debug)]
enum Cursor {
    /// On the list of determinate entries: a call is a candidate; the first return ends them.
    Main(u32),
    /// On the list of indeterminate calls, after the determinate candidates: those called before
    /// `bound`, the first pending return, are candidates. At `NIL` none is left: backtrack.
    Indeterminate { node: u32, bound: u32 },
}

/// One linearized operation on the stack.
struct Frame<S> {
    call: u32,
    /// The state before it.
    state: S,
    /// For an indeterminate call, the bound its candidacy was under (to resume after it).
    bound: u32,
}

enum SearchOutcome {
    Linearizable,
    NotLinearizable,
    OutOfTime,
    OutOfMemory,
    OutOfSteps,
}

/// The longest prefix seen, for the report.
struct Longest<S> {
    /// Operation indices, in linearization order.
    prefix: Vec<u32>,
    state: S,
    /// Operation indices of the determinate calls before the first pending return.
    frontier: Vec<u32>,
}

/// `HashMap` keyed by hashes already mixed: hashing them again would be wasted work.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashMap<u64, _>`; fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// (linearized set, state fingerprint) pairs, by a hash of both.
type Cache = HashMap<u64, Vec<(Box<[u64]>, u128)>, BuildHasherDefault<PassThroughHasher>>;

/// Two SipHashes with different keys over the same bytes: a 128-bit fingerprint in one pass.
struct FingerprintHasher(DefaultHasher, DefaultHasher);

impl FingerprintHasher {
    fn new() -> Self {
        let mut second = DefaultHasher::new();
        // A different prefix makes a different function of the rest.
        second.write_u64(0x5bd1_e995_0f00_dbad);
        FingerprintHasher(DefaultHasher::new(), second)
    }

    fn fingerprint(&self) -> u128 {
        (u128::from(self.0.finish()) << 64) | u128::from(self.1.finish())
    }
}

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0.finish()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }
}

/// splitmix64: a fixed pseudo-random 64-bit word per operation, so that the hash of the set of
/// linearized operations is the XOR of its members' words and updates in O(1) (Zobrist hashing).
fn zobrist(op: u32) -> u64 {
    let mut z = u64::from(op).wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One partition's search.
///
/// Porcupine keeps every entry on one list, so that at each step it tries the candidates in
/// call order. Here indeterminate calls have a list of their own, latest call first (a request
/// that timed out most likely took effect soon after it was sent, if at all), tried before or
/// after the determinate candidates as [`Model::INDETERMINATE_FIRST`] says. The set of candidates
/// at each point is the same as porcupine's, so the search is as complete; only the order
/// differs.
struct Search<'m, M: Model> {
    model: &'m M,
    ops: Vec<Op<M::Input, M::Output>>,
    nodes: Vec<Node>,
    linearized: Vec<u64>,
    linearized_hash: u64,
    state: M::State,
    stack: Vec<Frame<M::State>>,
    /// Determinate operations not yet linearized; at 0 the search has succeeded.
    determinate_left: usize,
    cache: Cache,
    longest: Option<Longest<M::State>>,
    steps: u64,
    cache_entries: u64,
    cache_bytes: u64,
    /// [`Model::INDETERMINATE_FIRST`].
    indeterminate_first: bool,
    /// For each operation with an [`Op::interchangeable`] class, the operation of that class
    /// called just before it (`NIL` if none): it waits for that one (see the module docs).
    called_before_in_class: Vec<u32>,
    /// [`Model::ceiling`] of each operation.
    ceiling_of: Vec<Option<i64>>,
    /// The ceilings of the operations not yet linearized, with how many have each.
    pending_ceilings: BTreeMap<i64, u32>,
}

impl<'m, M: Model> Search<'m, M> {
    fn new(model: &'m M, ops: Vec<Op<M::Input, M::Output>>) -> Self {
        assert!(ops.len() < (NIL as usize) / 4, "a partition of {} operations is too large", ops.len());
        // (time, return after call at equal times, op index): a total order, so the lists do
        // not depend on the input order beyond the index tie-break.
        let mut entries: Vec<(u64, bool, u32)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.call_ns, false, i as u32));
            if let Some(return_ns) = op.return_ns {
                assert!(return_ns >= op.call_ns, "op {} returns before its call", op.id);
                entries.push((return_ns, true, i as u32));
            }
        }
        entries.sort_unstable();
        let head = Node { op: NIL, return_node: NIL, is_call: false, prev: NIL, next: NIL };
        let mut nodes = vec![head, head];
        let mut return_node_of = vec![NIL; ops.len()];
        let mut main_tail = MAIN_HEAD;
        for &(_, is_return, op) in &entries {
            let index = nodes.len() as u32;
            if is_return {
                return_node_of[op as usize] = index;
            }
            if !is_return && ops[op as usize].return_ns.is_none() {
                // Latest first: insert at the front of the indeterminate list.
                let first = nodes[INDETERMINATE_HEAD as usize].next;
                nodes.push(Node { op, return_node: NIL, is_call: true, prev: INDETERMINATE_HEAD, next: first });
                if first != NIL {
                    nodes[first as usize].prev = index;
                }
                nodes[INDETERMINATE_HEAD as usize].next = index;
            } else {
                nodes.push(Node { op, return_node: NIL, is_call: !is_return, prev: main_tail, next: NIL });
                nodes[main_tail as usize].next = index;
                main_tail = index;
            }
        }
        for node in nodes.iter_mut().skip(2) {
            if node.is_call && ops[node.op as usize].return_ns.is_some() {
                node.return_node = return_node_of[node.op as usize];
                assert!(node.return_node != NIL);
            }
        }
        let determinate_left = ops.iter().filter(|op| op.return_ns.is_some()).count();
        let mut called_before_in_class = vec![NIL; ops.len()];
        let mut last_of_class: HashMap<u64, u32> = HashMap::new();
        for &(_, is_return, op) in &entries {
            let o = &ops[op as usize];
            if let (false, None, Some(class)) = (is_return, o.return_ns, o.interchangeable) {
                if let Some(earlier) = last_of_class.insert(class, op) {
                    called_before_in_class[op as usize] = earlier;
                }
            }
        }
        let ceiling_of: Vec<Option<i64>> =
            ops.iter().map(|op| op.output.as_ref().and_then(|output| model.ceiling(&op.input, output))).collect();
        let mut pending_ceilings = BTreeMap::new();
        for &c in ceiling_of.iter().flatten() {
            *pending_ceilings.entry(c).or_insert(0) += 1;
        }
        let state = model.init();
        Search {
            model,
            linearized: vec![0; ops.len().div_ceil(64)],
            ops,
            nodes,
            linearized_hash: 0,
            state,
            stack: Vec::new(),
            determinate_left,
            cache: Cache::default(),
            longest: None,
            steps: 0,
            cache_entries: 0,
            cache_bytes: 0,
            indeterminate_first: M::INDETERMINATE_FIRST,
            called_before_in_class,
            ceiling_of,
            pending_ceilings,
        }
    }

    fn unlink(&mut self, n: u32) {
        let Node { prev, next, .. } = self.nodes[n as usize];
        self.nodes[prev as usize].next = next;
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
    }

    /// Undoes `unlink(n)`; valid only in the reverse order of the unlinks (the stack ensures it).
    fn relink(&mut self, n: u32) {
        let Node { prev, next, .. } = self.nodes[n as usize];
        self.nodes[prev as usize].next = n;
        if next != NIL {
            self.nodes[next as usize].prev = n;
        }
    }

    fn lift(&mut self, call: u32) {
        self.unlink(call);
        let ret = self.nodes[call as usize].return_node;
        if ret != NIL {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, call: u32) {
        let ret = self.nodes[call as usize].return_node;
        if ret != NIL {
            self.relink(ret);
        }
        self.relink(call);
    }

    fn flip(&mut self, op: u32) {
        self.linearized[op as usize / 64] ^= 1 << (op % 64);
        self.linearized_hash ^= zobrist(op);
    }

    /// Takes operation `op`'s ceiling out of the pending ones (it is linearized) or puts it back.
    fn count_ceiling(&mut self, op: u32, pending: bool) {
        let Some(c) = self.ceiling_of[op as usize] else { return };
        if pending {
            *self.pending_ceilings.entry(c).or_insert(0) += 1;
        } else {
            let count = self.pending_ceilings.get_mut(&c).expect("a pending operation's ceiling is counted");
            *count -= 1;
            if *count == 0 {
                self.pending_ceilings.remove(&c);
            }
        }
    }

    /// Whether the state is past the ceiling of some operation still pending.
    fn past_a_ceiling(&self) -> bool {
        self.pending_ceilings.first_key_value().is_some_and(|(&c, _)| self.model.progress(&self.state) > c)
    }

    fn is_linearized(&self, op: u32) -> bool {
        self.linearized[op as usize / 64] & (1 << (op % 64)) != 0
    }

    fn is_determinate(&self, node: u32) -> bool {
        self.ops[self.nodes[node as usize].op as usize].return_ns.is_some()
    }

    /// Remembers (linearized, state); false if it was already there.
    fn remember(&mut self, state: &M::State) -> bool {
        let mut hasher = FingerprintHasher::new();
        state.hash(&mut hasher);
        let fingerprint = hasher.fingerprint();
        let key = self.linearized_hash ^ (fingerprint as u64);
        let bucket = self.cache.entry(key).or_default();
        if bucket.iter().any(|(set, f)| *f == fingerprint && **set == *self.linearized) {
            return false;
        }
        bucket.push((self.linearized.clone().into_boxed_slice(), fingerprint));
        self.cache_entries += 1;
        let entry_bytes = self.linearized.len() * 8 + std::mem::size_of::<(Box<[u64]>, u128)>();
        self.cache_bytes += entry_bytes as u64;
        true
    }

    /// The first indeterminate candidate under `bound`: the latest call before it.
    fn first_indeterminate_before(&self, bound: u32) -> u32 {
        let mut n = self.nodes[INDETERMINATE_HEAD as usize].next;
        while n != NIL && n > bound {
            n = self.nodes[n as usize].next;
        }
        n
    }

    fn run(&mut self, deadline: Instant, cache_bytes_max: u64, steps_max: u64) -> SearchOutcome {
        let mut cursor = self.restart();
        loop {
            if self.determinate_left == 0 {
                return SearchOutcome::Linearizable;
            }
            let (candidate, bound) = match cursor {
                Cursor::Main(n) => {
                    // A determinate operation is left, so its return is still on the list,
                    // after every determinate call not yet linearized: the walk meets a return.
                    assert!(n != NIL, "walked off the list with determinate operations left");
                    if self.nodes[n as usize].is_call {
                        (n, NIL)
                    } else if self.indeterminate_first {
                        let Some(c) = self.backtrack(n) else { return SearchOutcome::NotLinearizable };
                        cursor = c;
                        continue;
                    } else {
                        // The determinate candidates are exhausted; the indeterminate ones next.
                        cursor = Cursor::Indeterminate { node: self.first_indeterminate_before(n), bound: n };
                        continue;
                    }
                }
                Cursor::Indeterminate { node: NIL, bound } => {
                    if self.indeterminate_first {
                        cursor = Cursor::Main(self.nodes[MAIN_HEAD as usize].next);
                    } else {
                        let Some(c) = self.backtrack(bound) else { return SearchOutcome::NotLinearizable };
                        cursor = c;
                    }
                    continue;
                }
                Cursor::Indeterminate { node, bound } => (node, bound),
            };

            self.steps += 1;
            if self.steps > steps_max {
                return SearchOutcome::OutOfSteps;
            }
            if self.steps.is_multiple_of(STEPS_PER_CLOCK_CHECK) && Instant::now() >= deadline {
                return SearchOutcome::OutOfTime;
            }
            if self.cache_bytes > cache_bytes_max {
                return SearchOutcome::OutOfMemory;
            }
            let node = self.nodes[candidate as usize];
            debug_assert!(node.is_call && !self.is_linearized(node.op));
            let op = &self.ops[node.op as usize];
            let determinate = op.return_ns.is_some();
            let latest_ns = if self.model.is_timed() { self.first_return_ns(bound) } else { u64::MAX };
            let window = (op.call_ns, latest_ns);
            let earlier = self.called_before_in_class[node.op as usize];
            let waits_for_earlier = earlier != NIL && !self.is_linearized(earlier);
            let stepped = if waits_for_earlier {
                // Its interchangeable twin called earlier is still pending: placing that one here
                // is the same branch (see the module docs).
                None
            } else {
                self.model.step_before(&self.state, &op.input, op.output.as_ref(), window)
            };
            let accepted = match stepped {
                // An indeterminate operation that would change nothing here (a compare that
                // fails, a delete of nothing) is not worth placing here: every linearization
                // with it here is one without it here, and that one is searched anyway. Left in,
                // each such operation would double the work of every backtrack past it.
                Some(next_state) if !determinate && next_state == self.state => None,
                Some(next_state) => {
                    self.flip(node.op);
                    if self.remember(&next_state) {
                        Some(next_state)
                    } else {
                        // This (linearized set, state) was explored before and led nowhere.
                        self.flip(node.op);
                        None
                    }
                }
                None => None,
            };
            if let Some(next_state) = accepted {
                let before = std::mem::replace(&mut self.state, next_state);
                self.stack.push(Frame { call: candidate, state: before, bound });
                self.lift(candidate);
                if determinate {
                    self.determinate_left -= 1;
                    self.count_ceiling(node.op, false);
                }
                cursor = self.restart();
            } else if determinate {
                cursor = Cursor::Main(node.next);
            } else {
                cursor = Cursor::Indeterminate { node: self.next_indeterminate(candidate, bound), bound };
            }
        }
    }

    /// The operation of `pending_return` had to be linearized before now and no candidate is
    /// left: undo the last push and resume after it. `None`: nothing to undo.
    fn backtrack(&mut self, pending_return: u32) -> Option<Cursor> {
        debug_assert!(!self.is_linearized(self.nodes[pending_return as usize].op));
        self.note_longest(pending_return);
        let frame = self.stack.pop()?;
        let op = self.nodes[frame.call as usize].op;
        self.state = frame.state;
        self.flip(op);
        self.unlift(frame.call);
        Some(if self.is_determinate(frame.call) {
            self.determinate_left += 1;
            self.count_ceiling(op, true);
            Cursor::Main(self.nodes[frame.call as usize].next)
        } else {
            Cursor::Indeterminate { node: self.next_indeterminate(frame.call, frame.bound), bound: frame.bound }
        })
    }

    /// The time of the first return on the main list (`bound` if known), `u64::MAX` if none.
    fn first_return_ns(&self, bound: u32) -> u64 {
        let mut n = if bound != NIL { bound } else { self.nodes[MAIN_HEAD as usize].next };
        while n != NIL {
            let node = self.nodes[n as usize];
            if !node.is_call {
                return self.ops[node.op as usize].return_ns.expect("a return node has a return");
            }
            n = node.next;
        }
        u64::MAX
    }

    fn next_indeterminate(&self, node: u32, bound: u32) -> u32 {
        let next = self.nodes[node as usize].next;
        if next != NIL && next > bound {
            NIL
        } else {
            next
        }
    }

    /// Where the walk starts after a push. It walks the main list to the first return (the
    /// bound of the indeterminate candidates) if needed, checking on the way whether the new
    /// state can never accept one of the determinate operations that could come next or the one
    /// that must come first; if so, it backtracks at once.
    fn restart(&self) -> Cursor {
        let front = self.nodes[MAIN_HEAD as usize].next;
        if self.determinate_left == 0 || (!M::PRUNES && !self.indeterminate_first) {
            return Cursor::Main(front);
        }
        let mut n = front;
        let mut dead = self.past_a_ceiling();
        loop {
            assert!(n != NIL, "determinate operations left, so a return is on the list");
            let node = self.nodes[n as usize];
            let op = &self.ops[node.op as usize];
            if let (true, Some(output)) = (M::PRUNES, &op.output) {
                dead = dead || self.model.cannot_follow(&self.state, &op.input, output);
            }
            if !node.is_call {
                return match (dead, self.indeterminate_first) {
                    (true, true) => Cursor::Main(n),
                    (true, false) => Cursor::Indeterminate { node: NIL, bound: n },
                    (false, true) => Cursor::Indeterminate { node: self.first_indeterminate_before(n), bound: n },
                    (false, false) => Cursor::Main(front),
                };
            }
            n = node.next;
        }
    }

    fn note_longest(&mut self, pending_return: u32) {
        if self.longest.as_ref().is_some_and(|l| l.prefix.len() >= self.stack.len()) {
            return;
        }
        let prefix = self.stack.iter().map(|frame| self.nodes[frame.call as usize].op).collect();
        let mut frontier = Vec::new();
        let mut n = self.nodes[MAIN_HEAD as usize].next;
        while n != pending_return {
            let node = self.nodes[n as usize];
            assert!(node.is_call, "the first return on the list is the pending one");
            frontier.push(node.op);
            n = node.next;
        }
        self.longest = Some(Longest { prefix, state: self.state.clone(), frontier });
    }

    fn violation(&self, model: &M, key: &M::PartitionKey) -> Violation {
        let longest = self.longest.as_ref().expect("a failed search met a pending return");
        let mut involved: Vec<InvolvedOp> = longest
            .frontier
            .iter()
            .map(|&i| {
                let op = &self.ops[i as usize];
                InvolvedOp {
                    id: op.id,
                    client: op.client,
                    call_ns: op.call_ns,
                    return_ns: op.return_ns,
                    description: model.describe_operation(&op.input, op.output.as_ref()),
                }
            })
            .collect();
        involved.sort_by_key(|op| (op.call_ns, op.id));
        // The states along the prefix, replayed: the search keeps only the last one. Each step
        // was accepted in the search (with a tighter time bound), so it is accepted again.
        let prefix_states_from = longest.prefix.len().saturating_sub(PREFIX_STATES_KEPT);
        let mut prefix_states = Vec::new();
        let mut state = model.init();
        for (i, &op) in longest.prefix.iter().enumerate() {
            let op = &self.ops[op as usize];
            match model.step_before(&state, &op.input, op.output.as_ref(), (op.call_ns, u64::MAX)) {
                Some(next) => state = next,
                None => break,
            }
            if i >= prefix_states_from {
                prefix_states.push(model.describe_state(&state));
            }
        }
        Violation {
            prefix_states,
            prefix_states_from,
            partition: model.describe_partition(key),
            longest_prefix: longest.prefix.iter().map(|&i| self.ops[i as usize].id).collect(),
            state_after_prefix: model.describe_state(&longest.state),
            involved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter: `Some(n)` adds n (output: nothing); `None` reads (output: the value).
    struct Counter;

    impl Model for Counter {
        type Input = Option<u32>;
        type Output = u32;
        type State = u32;
        type PartitionKey = ();

        fn init(&self) -> u32 {
            0
        }

        fn step(&self, state: &u32, input: &Option<u32>, output: Option<&u32>) -> Option<u32> {
            match input {
                Some(n) => Some(state + n),
                None => output.is_none_or(|o| o == state).then_some(*state),
            }
        }

        fn partition(&self, _: &Option<u32>) {}

        fn is_read_only(&self, input: &Option<u32>) -> bool {
            input.is_none()
        }

        fn describe_partition(&self, _: &()) -> String {
            "all".into()
        }

        fn describe_operation(&self, input: &Option<u32>, output: Option<&u32>) -> String {
            format!("{input:?} -> {output:?}")
        }

        fn describe_state(&self, state: &u32) -> String {
            state.to_string()
        }
    }

    fn op(id: usize, call_ns: u64, return_ns: u64, input: Option<u32>, output: Option<u32>) -> Op<Option<u32>, u32> {
        let return_ns = output.map(|_| return_ns);
        Op { id, client: id as u64, call_ns, return_ns, input, output, interchangeable: None }
    }

    fn verdict(ops: Vec<Op<Option<u32>, u32>>) -> Verdict {
        check(&Counter, ops, &CheckOptions::default()).verdict
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(verdict(vec![]), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_adds_and_reads() {
        // add 1 and add 2 overlap; reads inside see 1 then 3: add 1 went first.
        let ops = vec![
            op(0, 0, 100, Some(1), Some(0)),
            op(1, 0, 100, Some(2), Some(0)),
            op(2, 10, 20, None, Some(1)),
            op(3, 30, 40, None, Some(3)),
        ];
        assert_eq!(verdict(ops), Verdict::Linearizable);
    }

    #[test]
    fn read_of_an_impossible_value_is_reported() {
        let ops = vec![op(0, 0, 10, Some(1), Some(0)), op(1, 20, 30, None, Some(0))];
        let Verdict::NotLinearizable(v) = verdict(ops) else { panic!() };
        assert_eq!(v.longest_prefix, vec![0]);
        assert_eq!(v.state_after_prefix, "1");
        assert_eq!(v.involved.iter().map(|o| o.id).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The read's call and the add's return are at the same instant: either order.
        let ops = vec![op(0, 0, 10, Some(1), Some(0)), op(1, 10, 30, None, Some(0))];
        assert_eq!(verdict(ops), Verdict::Linearizable);
    }

    /// Sixteen indeterminate `add 1`s, then reads of 7 and of `last`. As one class of
    /// interchangeable operations, only how many of them took effect matters: same verdicts,
    /// with a small fraction of the steps when the search must try everything.
    #[test]
    fn interchangeable_indeterminate_operations_are_tried_by_count_not_by_subset() {
        let history = |class: Option<u64>, last: u32| {
            let mut ops: Vec<_> =
                (0..16).map(|i| Op { interchangeable: class, ..op(i, i as u64, 0, Some(1), None) }).collect();
            ops.push(op(16, 100, 110, None, Some(7)));
            ops.push(op(17, 120, 130, None, Some(last)));
            ops
        };
        let run = |class, last| check(&Counter, history(class, last), &CheckOptions::default());
        for last in [9, 16] {
            assert_eq!(run(None, last).verdict, Verdict::Linearizable, "read of {last}");
            assert_eq!(run(Some(0), last).verdict, Verdict::Linearizable, "read of {last}");
        }
        let (plain, classed) = (run(None, 100), run(Some(0), 100));
        assert!(matches!(plain.verdict, Verdict::NotLinearizable(_)));
        assert!(matches!(classed.verdict, Verdict::NotLinearizable(_)));
        assert!(
            classed.stats.steps * 100 < plain.stats.steps,
            "{} steps as a class, {} one by one",
            classed.stats.steps,
            plain.stats.steps
        );
    }

    #[test]
    fn indeterminate_add_may_happen_late_or_never() {
        let late = vec![op(0, 0, 10, Some(5), None), op(1, 20, 30, None, Some(0)), op(2, 40, 50, None, Some(5))];
        assert_eq!(verdict(late), Verdict::Linearizable);
        let never = vec![op(0, 0, 10, Some(5), None), op(1, 20, 30, None, Some(0))];
        assert_eq!(verdict(never), Verdict::Linearizable);
        // Not before its call.
        let early = vec![op(0, 0, 10, None, Some(5)), op(1, 20, 30, Some(5), None)];
        assert!(matches!(verdict(early), Verdict::NotLinearizable(_)));
    }

    #[test]
    fn zero_budget_gives_unknown_not_linearizable() {
        // Twenty concurrent adds and a read of a sum no subset makes: the search must try every
        // subset, far more steps than one clock check, and a zero budget stops it at the first.
        let mut ops: Vec<_> = (0..20).map(|i| op(i, 0, 1000, Some(1 << (i % 10)), Some(0))).collect();
        ops.push(op(20, 0, 1000, None, Some(2047)));
        let result = check(&Counter, ops.clone(), &CheckOptions { step_budget: 100, ..CheckOptions::default() });
        assert!(matches!(&result.verdict, Verdict::Unknown { budget: Budget::Steps, .. }), "{:?}", result.verdict);
        let result = check(&Counter, ops.clone(), &CheckOptions { budget_ms: 0, ..CheckOptions::default() });
        let Verdict::Unknown { reason, .. } = result.verdict else { panic!("{:?}", result.verdict) };
        assert!(reason.contains("time budget of 0 ms"), "{reason}");
        let result = check(&Counter, ops, &CheckOptions { cache_budget_mib: 1, ..CheckOptions::default() });
        let Verdict::Unknown { reason, .. } = result.verdict else { panic!("{:?}", result.verdict) };
        assert!(reason.contains("cache memory budget of 1 MiB"), "{reason}");
    }
}
