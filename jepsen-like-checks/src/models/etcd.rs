//! The key space with etcd's global revision.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::rc::Rc;

use super::register::describe;
use super::{compare_holds, HistoryModel};
use crate::history::{
    Bytes, Compare, CompareTarget, DeleteRequest, KeyValue, PutRequest, RangeRequest, Request, Response, TxnOp,
    TxnOpResponse,
};
use crate::linearizability::Model;

/// etcd's key space at its current revision.
///
/// The state is the store's revision and, for each existing key, its value, create and mod
/// revisions and version. Operations change it as etcd does:
///
/// - `put`: the revision goes up by 1; the key gets `mod_revision` = the new revision, version
///   + 1, and keeps its `create_revision` (or gets the new revision and version 1 if it was absent).
/// - `delete`: if the range holds keys, the revision goes up by 1 and they are removed; if it holds
///   none, nothing changes — no new revision.
/// - `txn`: the compares are evaluated on the state before it (all must hold for the success
///   branch); a value compare on no key is false, other targets compare an absent key as 0; a
///   compare over a range holds if it holds for every key in it. The branch's requests run in
///   order, each seeing the effects of the ones before, and every write of the txn gets the same
///   revision, the current one + 1. The revision goes up (once) only if the branch changed
///   something: a txn that only reads, or whose deletes found nothing, makes no revision.
/// - `range`: changes nothing.
///
/// Checked for an `ok` operation: the whole response, field by field — every key-value returned
/// (key, value, `create_revision`, `mod_revision`, `version`, `lease` 0) in key order, `prev_kv` and
/// `prev_kvs` when asked for (and absent when not), `deleted`, `succeeded`, the txn's responses —
/// and the header: **`header_revision` must equal the model's revision just after the operation
/// takes effect**. For a write that changed something that is the revision it created; for a
/// range, a read-only txn or a write that changed nothing it is the revision of the state it read.
/// (etcd fills a read's header from the same read transaction that produced its key-values; so a
/// linearizable read reports exactly the revision at which it read, and in particular a header
/// revision below the revision of a write that completed before the read was sent is a
/// violation.)
///
/// The store starts empty at `initial_revision` (1 for a new etcd cluster): a history must be
/// recorded from a fresh cluster, or from an empty key space whose revision is known.
///
/// # Leases
///
/// The state holds the live leases and each key's lease (0: none), shown in every key-value and
/// compared by `lease` compares. `lease_grant` creates a lease (an `ok` grant of an existing id is a
/// violation), header revision unchanged; a put with a lease needs it alive (etcd refuses it
/// otherwise) and attaches the key to it, a put without detaches; `lease_revoke` needs it alive,
/// deletes its keys (one new revision if there were any) and the lease, header = the revision
/// after; `lease_keepalive` answered with a TTL needs it alive and renews it, answered with TTL 0
/// needs it gone. Keepalive headers are not checked: etcd's leader answers keepalives outside
/// raft, with whatever revision it has applied.
///
/// Expiry is time-driven and invisible: no client asks for it. It is sound to let a lease expire
/// at any instant after its TTL has run out since the earliest it can last have been renewed — the
/// call of its grant or of its last keepalive answered with a TTL, in history time — and never
/// before (etcd never expires a lease early; leader changes only extend them). So the checker adds
/// one optional operation per grant, [`Request::LeaseExpire`], which the search places like an
/// indeterminate write; the model accepts it only while the lease is alive and
/// `renewed_ns + ttl_ns` is at or before the latest instant that place allows (the earliest return
/// still pending, see [`Model::step_before`]), and it then does what a revoke does. A correct
/// history never fails for want of an expiry, and an `ok` read of a leased key long after its
/// TTL with no keepalive is still accepted (the lease may not have expired yet: etcd checks expiry
/// every 500 ms, later under load). Grants whose id the server picked and whose outcome is
/// indeterminate cannot be followed (the id is unknown) and are refused by
/// [`HistoryModel::supports`]'s caller.
///
/// ## Removing a lease that holds no keys: only where it is observed
///
/// Optional steps that the search may place anywhere after their call multiply its work: each
/// one pending is a choice (placed or not) that nothing may contradict for a long while, and the
/// cache sees 2^k (linearized set, state) pairs for k of them. An expiry (or an indeterminate
/// revoke) of a lease that has keys deletes them at a new revision, which the next header
/// revision confirms or refutes at once. One of a lease **without keys** changes nothing but the
/// lease map, and the lease map is observed by exactly four requests on that lease: a put with it
/// (needs it alive), a revoke answered `ok` (alive), a keepalive answered with a TTL (alive) and a
/// keepalive answered with TTL 0 (gone); grants use fresh ids, and no key carries it. So such a
/// removal is never a step of its own here ([`Request::LeaseExpire`] and an indeterminate
/// [`Request::LeaseRevoke`] are refused while the lease holds no keys); instead a keepalive
/// answered with TTL 0 that finds the lease alive and keyless removes it itself, if an expiry
/// (as above, with the keepalive's window) or an indeterminate revoke of it called by then
/// ([`EtcdModel::indeterminate_revoke_calls`]) could have removed it just before.
///
/// Same verdicts as placing the removal as a step (the argument; the tests in
/// `tests/leases_and_compaction.rs` exercise both directions):
///
/// - *Sound* (every sequence accepted here is one the step model accepts): put the removal as a
///   step right before the keepalive that did it. The state is the same from there on; before
///   it, the lease was alive in both, and no key carried it, so every answer is the same; and
///   the step's own conditions are the ones checked (an expiry's window is the keepalive's,
///   since both come before the same pending returns; a revoke's call came before).
/// - *Complete* (every sequence the step model accepts has one accepted here): take a removal
///   of a keyless lease out of it. Until the next request on that lease nothing differs (nothing
///   else observes it). That request cannot be a put with it, a revoke `ok` or a keepalive with a
///   TTL (they need it alive, and it was gone); if it is a keepalive answered TTL 0, the
///   removal happens there, within a later window, so allowed; an indeterminate request may simply
///   be left out (it is optional; left out, a keepalive's renewal is missing, which only allows
///   more). A removed lease never gets keys again (keys need a live lease).
///
/// (An indeterminate revoke is refused only as a step with no output: revokes are never pinned
/// by [`crate::check`], so one with no output has no return either and may be left out.)
///
/// # Compaction and past revisions
///
/// `compact(r)` answered `ok` needs the compacted revision `< r <=` the current one (etcd's
/// `ErrCompacted` and `ErrFutureRev` otherwise) and records `r`. A range at revision `r` answered
/// `ok` needs `r >=` the compacted revision and `<=` the current one (an `ok` read at a compacted
/// revision is a violation), and its key-values must be those of revision `r`: the model keeps the
/// store at each past revision (shared, copy-on-write) when [`EtcdModel::keep_history`] is set,
/// which the checker does when the history has such ranges. Its header is the current revision.
///
/// # What answers say about a key: refusing a misplaced indeterminate write at once
///
/// An indeterminate write fills a gap in the revisions between two answered operations; with
/// several pending, the search tries each at each gap, and a wrong choice (the put of key `a`
/// where the put of key `b` happened) shows only when an answer next shows `a` — after hundreds of
/// steps on a long history, each of which may hold more such choices: the product is what ran
/// searches out of budget. [`KeyFacts`] moves the refutation to the step itself: an answer that
/// showed key `k` at revision `at` with create revision `c` and mod revision `m` says that no
/// write touched `k` at a revision in `(m, at]` and no delete removed it at a revision in
/// `[c, at]` (after such a write, `k` at `at` would show a later mod revision, or a later create
/// revision). So an indeterminate operation (no output) whose write lands in such a span is
/// refused. Same verdicts: every linearization that places it there fails at that answer anyway
/// (the answer must then be linearized at `at`, where its key-value cannot match), and the ones
/// that don't are untouched; if the answer itself is wrong, no linearization exists either way.
///
/// # Removed leases
///
/// An answer that needs a lease alive — a keepalive answered with a TTL, a put attaching a key
/// to it, a revoke answered `ok` — can never be linearized once that lease was removed, unless a
/// later grant makes the same id again. The state remembers the leases removed along the way,
/// and [`Model::cannot_follow`] ends a branch where such an answer is still pending for one of
/// them whose id only one grant of the history names ([`EtcdModel::granted_twice`] lists the
/// others). Without it, an expiry placed too early was found out only when that answer's turn
/// came, after every order of the indeterminate operations pending at the end of a history
/// (5-member lease seed 181, 60 s). Same verdicts: it ends only branches that cannot succeed.
///
/// Not checked: etcd's refusal of txns that write one key twice (such a txn fails, so it should not
/// appear as `ok`; the model applies its requests in order).
#[derive(Clone, Debug)]
pub struct EtcdModel {
    pub initial_revision: i64,
    /// Keep the key space at every past revision, for ranges at a revision. Costs a pointer per
    /// revision, and compares of whole histories when the search compares states.
    pub keep_history: bool,
    /// The history has leases: the search passes times to [`Model::step_before`].
    pub leases: bool,
    /// How far a leader's lease clock may have run ahead of the history's clock over a lease's
    /// life (clock jumps, drift): a lease may expire this much before its TTL is up in history
    /// time. None for a cluster whose clocks are sound; the simulator passes what it injected.
    pub lease_clock: LeaseClockSlack,
    /// For each lease, the earliest call of an indeterminate revoke of it in the history: from
    /// then on a keepalive answered TTL 0 may find it removed while it holds no keys (see
    /// "Removing a lease that holds no keys" above).
    pub indeterminate_revoke_calls: Rc<BTreeMap<i64, u64>>,
    /// What the answers of the history showed of each key (see "What answers say about a key").
    pub facts: Rc<KeyFacts>,
    /// Lease ids more than one grant of the history may have made (see "Removed leases").
    pub granted_twice: Rc<BTreeSet<i64>>,
}

/// For each key, the spans of revisions over which some answer showed it unchanged and alive
/// (see "What answers say about a key" on [`EtcdModel`]).
#[derive(Clone, Debug, Default)]
pub struct KeyFacts {
    spans: BTreeMap<Bytes, Vec<SeenSpan>>,
}

/// Key-value `kv` as it was at revision `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SeenSpan {
    create_revision: i64,
    mod_revision: i64,
    at: i64,
}

impl KeyFacts {
    /// Records that an answer showed `kv` as it was at revision `at`.
    pub fn saw(&mut self, kv: &KeyValue, at: i64) {
        let span = SeenSpan { create_revision: kv.create_revision, mod_revision: kv.mod_revision, at };
        // Nonsense (a mod revision after the revision read) says nothing sound; the search
        // rejects that answer by itself.
        if span.create_revision <= span.mod_revision && span.mod_revision <= at {
            self.spans.entry(kv.key.clone()).or_default().push(span);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Whether some answer rules out a put of `key` at `revision`.
    fn forbids_put(&self, key: &Bytes, revision: i64) -> bool {
        self.spans.get(key).is_some_and(|spans| spans.iter().any(|s| s.mod_revision < revision && revision <= s.at))
    }

    /// Whether some answer rules out removing `key` at `revision`.
    fn forbids_delete(&self, key: &Bytes, revision: i64) -> bool {
        self.spans.get(key).is_some_and(|spans| spans.iter().any(|s| s.create_revision <= revision && revision <= s.at))
    }
}

impl Default for EtcdModel {
    fn default() -> Self {
        EtcdModel {
            initial_revision: 1,
            keep_history: false,
            leases: false,
            lease_clock: LeaseClockSlack::default(),
            indeterminate_revoke_calls: Rc::new(BTreeMap::new()),
            facts: Rc::new(KeyFacts::default()),
            granted_twice: Rc::new(BTreeSet::new()),
        }
    }
}

/// A server's clock jumping forward by `by_ns`, at `at_ns` on the history's clock (or later).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockJump {
    pub at_ns: u64,
    pub server: u64,
    pub by_ns: u64,
}

/// How much earlier than its TTL says a lease may expire, by when it was last renewed.
///
/// A leader sets a lease's expiry from its own clock when it renews the lease (or when it
/// becomes leader); a jump of that clock *afterwards* brings the expiry nearer in real time, a
/// jump before does nothing. So a lease renewed at `r` may expire early by the drift allowance
/// plus the largest sum of one server's jumps at or after `r` — one server's, because a new
/// leader restarts the lease from its own clock with a full TTL. (With lease checkpoints a
/// shortened remaining TTL could pass from one leader to the next; detcd checkpoints only
/// leases longer than five minutes, which the simulator's are not.) Counting only the jumps
/// after the renewal, instead of every jump of the run, keeps most expiries pinned to a narrow
/// window: a lease that may expire almost anywhere multiplies the search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseClockSlack {
    /// The allowance for drift, whatever the renewal.
    pub drift_ns: u64,
    /// (t, the jumps' share of the slack for a renewal at or before t and after the previous t),
    /// t ascending; none after the last t.
    steps: Vec<(u64, u64)>,
}

impl LeaseClockSlack {
    pub fn new(drift_ns: u64, jumps: &[ClockJump]) -> Self {
        let mut times: Vec<u64> = jumps.iter().map(|j| j.at_ns).collect();
        times.sort_unstable();
        times.dedup();
        let steps = times
            .iter()
            .map(|&t| {
                let mut per_server: BTreeMap<u64, u64> = BTreeMap::new();
                for j in jumps.iter().filter(|j| j.at_ns >= t) {
                    *per_server.entry(j.server).or_default() += j.by_ns;
                }
                (t, per_server.values().copied().max().unwrap_or(0))
            })
            .collect();
        LeaseClockSlack { drift_ns, steps }
    }

    /// The slack for a lease last renewed at `renewed_ns`.
    pub fn after_ns(&self, renewed_ns: u64) -> u64 {
        let i = self.steps.partition_point(|&(t, _)| t < renewed_ns);
        self.drift_ns.saturating_add(self.steps.get(i).map_or(0, |&(_, jumps_ns)| jumps_ns))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyState {
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// 0: none.
    pub lease: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseState {
    pub ttl_ns: u64,
    /// The earliest instant it can last have been renewed (granted or kept alive).
    pub renewed_ns: u64,
}

/// The key space at a past revision, and the one before it.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: i64,
    pub keys: Rc<BTreeMap<Bytes, KeyState>>,
    pub older: Option<Rc<Snapshot>>,
    /// A hash of the three fields above (the keys by their [`EtcdState::keys_hash`], the older
    /// snapshot by its own `hash`), computed once when the snapshot is made, so that hashing a
    /// state covers its whole past cheaply.
    pub hash: u64,
}

impl Snapshot {
    fn new(revision: i64, keys: Rc<BTreeMap<Bytes, KeyState>>, keys_hash: u128, older: Option<Rc<Snapshot>>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        revision.hash(&mut hasher);
        keys_hash.hash(&mut hasher);
        older.as_ref().map(|o| o.hash).hash(&mut hasher);
        Snapshot { revision, keys, older, hash: hasher.finish() }
    }
}

/// One key's share of [`EtcdState::keys_hash`]: 128 bits, two SipHashes with different keys.
fn entry_hash(key: &Bytes, state: &KeyState) -> u128 {
    let mut first = std::hash::DefaultHasher::new();
    let mut second = std::hash::DefaultHasher::new();
    second.write_u64(0x2545_f491_4f6c_dd1d);
    for hasher in [&mut first, &mut second] {
        key.hash(hasher);
        state.hash(hasher);
    }
    (u128::from(first.finish()) << 64) | u128::from(second.finish())
}

/// The maps are shared between the states of the search (most steps are reads, which change
/// nothing) and copied on write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdState {
    pub revision: i64,
    pub keys: Rc<BTreeMap<Bytes, KeyState>>,
    /// The wrapping sum of [`entry_hash`] over `keys`, kept up to date by every write: the search
    /// hashes a state at every step, and hashing the whole map was a third of its time.
    pub keys_hash: u128,
    pub leases: Rc<BTreeMap<i64, LeaseState>>,
    /// The revision of the last compaction (0: none).
    pub compact_revision: i64,
    /// With [`EtcdModel::keep_history`]: the key space at each revision before the current one,
    /// latest first.
    pub past: Option<Rc<Snapshot>>,
    /// Leases granted and then removed (revoked, expired), for [`Model::cannot_follow`]: an
    /// answer that needs one alive can never come (see "Removed leases"). Left out of the hash:
    /// it follows from the linearized operations (whose grants were placed) and `leases`.
    pub removed_leases: Rc<BTreeSet<i64>>,
}

/// Covers everything equality compares, as the search's cache needs: the keys by their
/// running hash, the past by the hash each snapshot computed when it was made.
impl Hash for EtcdState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.revision.hash(state);
        self.keys_hash.hash(state);
        self.leases.hash(state);
        self.compact_revision.hash(state);
        self.past.as_ref().map(|p| p.hash).hash(state);
    }
}

impl EtcdState {
    /// The key space at revision `revision` (`<=` the current one).
    fn keys_at(&self, revision: i64) -> Option<&BTreeMap<Bytes, KeyState>> {
        if revision >= self.revision {
            return Some(&self.keys);
        }
        let mut at = self.past.as_deref();
        while let Some(snapshot) = at {
            if snapshot.revision <= revision {
                return Some(&snapshot.keys);
            }
            at = snapshot.older.as_deref();
        }
        None
    }
}

fn key_value(key: &Bytes, state: &KeyState) -> KeyValue {
    KeyValue {
        key: key.clone(),
        value: state.value.clone(),
        create_revision: state.create_revision,
        mod_revision: state.mod_revision,
        version: state.version,
        lease: state.lease,
    }
}

/// The keys in etcd's range `[key, range_end)`: an empty end means the single key, `"\0"` every
/// key `>= key`, and an end at or before `key` nothing.
fn select<'a>(keys: &'a BTreeMap<Bytes, KeyState>, key: &Bytes, range_end: &Bytes) -> Vec<(&'a Bytes, &'a KeyState)> {
    if range_end.is_empty() {
        return keys.get_key_value(key).into_iter().collect();
    }
    let end = if range_end.as_slice() == [0] {
        Bound::Unbounded
    } else if range_end <= key {
        return Vec::new();
    } else {
        Bound::Excluded(range_end)
    };
    keys.range::<Bytes, _>((Bound::Included(key), end)).collect()
}

fn compare(keys: &BTreeMap<Bytes, KeyState>, c: &Compare) -> bool {
    let selected = select(keys, &c.key, &c.range_end);
    if selected.is_empty() {
        return match &c.target {
            // etcd: "always fail if comparing a value on a key/keys that doesn't exist".
            CompareTarget::Value(_) => false,
            CompareTarget::Version(n) | CompareTarget::CreateRevision(n) | CompareTarget::ModRevision(n) => {
                compare_holds(c.result, 0.cmp(n))
            }
            CompareTarget::Lease(n) => compare_holds(c.result, 0.cmp(n)),
        };
    }
    selected.iter().all(|(_, k)| match &c.target {
        CompareTarget::Value(v) => compare_holds(c.result, k.value.cmp(v)),
        CompareTarget::Version(n) => compare_holds(c.result, k.version.cmp(n)),
        CompareTarget::CreateRevision(n) => compare_holds(c.result, k.create_revision.cmp(n)),
        CompareTarget::ModRevision(n) => compare_holds(c.result, k.mod_revision.cmp(n)),
        CompareTarget::Lease(n) => compare_holds(c.result, k.lease.cmp(n)),
    })
}

/// Applies requests to a copy-on-write key map at one pending revision.
struct Writer<'s> {
    before: &'s EtcdState,
    keys: Rc<BTreeMap<Bytes, KeyState>>,
    /// [`EtcdState::keys_hash`] of `keys`.
    keys_hash: u128,
    /// The revision the writes get: the current one + 1.
    write_revision: i64,
    changed: bool,
    /// Something etcd would have refused (a range at a compacted or future revision, a put with
    /// a lease that is not alive): the request failed, so an `ok` answer is impossible.
    refused: bool,
}

impl Writer<'_> {
    fn range(&mut self, r: &RangeRequest) -> Vec<KeyValue> {
        let before = self.before;
        let keys = if r.revision == 0 {
            &*self.keys
        } else if r.revision < before.compact_revision {
            // etcd: ErrCompacted.
            self.refused = true;
            return Vec::new();
        } else if r.revision <= before.revision {
            // At the revision the txn started from or earlier: without the txn's own writes.
            match before.keys_at(r.revision) {
                Some(keys) => keys,
                None => {
                    self.refused = true;
                    return Vec::new();
                }
            }
        } else if r.revision == self.write_revision && self.changed {
            // etcd lets a txn that already wrote read at the revision it is writing.
            &*self.keys
        } else {
            // etcd: ErrFutureRev.
            self.refused = true;
            return Vec::new();
        };
        select(keys, &r.key, &r.range_end).into_iter().map(|(k, s)| key_value(k, s)).collect()
    }

    fn put(&mut self, p: &PutRequest) -> Option<KeyValue> {
        if p.lease != 0 && !self.before.leases.contains_key(&p.lease) {
            self.refused = true;
        }
        let keys = Rc::make_mut(&mut self.keys);
        let previous = keys.get(&p.key);
        let prev_kv = previous.map(|s| key_value(&p.key, s));
        let next = KeyState {
            value: p.value.clone(),
            create_revision: previous.map_or(self.write_revision, |s| s.create_revision),
            mod_revision: self.write_revision,
            version: previous.map_or(0, |s| s.version) + 1,
            lease: p.lease,
        };
        self.keys_hash = self.keys_hash.wrapping_add(entry_hash(&p.key, &next));
        if let Some(old) = keys.insert(p.key.clone(), next) {
            self.keys_hash = self.keys_hash.wrapping_sub(entry_hash(&p.key, &old));
        }
        self.changed = true;
        if p.prev_kv {
            prev_kv
        } else {
            None
        }
    }

    /// Returns (deleted, prev_kvs).
    fn delete(&mut self, d: &DeleteRequest) -> (i64, Vec<KeyValue>) {
        let doomed: Vec<KeyValue> =
            select(&self.keys, &d.key, &d.range_end).into_iter().map(|(k, s)| key_value(k, s)).collect();
        if doomed.is_empty() {
            // Deleting nothing writes nothing: no new revision.
            return (0, Vec::new());
        }
        let keys = Rc::make_mut(&mut self.keys);
        for kv in &doomed {
            let removed = keys.remove(&kv.key).expect("a selected key exists");
            self.keys_hash = self.keys_hash.wrapping_sub(entry_hash(&kv.key, &removed));
        }
        self.changed = true;
        (doomed.len() as i64, if d.prev_kv { doomed } else { Vec::new() })
    }

    /// Deletes the keys attached to `lease`.
    fn delete_leased(&mut self, lease: i64) {
        let doomed: Vec<Bytes> =
            self.keys.iter().filter(|(_, k)| k.lease == lease).map(|(key, _)| key.clone()).collect();
        if doomed.is_empty() {
            return;
        }
        let keys = Rc::make_mut(&mut self.keys);
        for key in doomed {
            let removed = keys.remove(&key).expect("a selected key exists");
            self.keys_hash = self.keys_hash.wrapping_sub(entry_hash(&key, &removed));
        }
        self.changed = true;
    }

    fn finish(self, keep_history: bool) -> EtcdState {
        let before = self.before;
        let past = match (keep_history && self.changed, &before.past) {
            (true, older) => {
                Some(Rc::new(Snapshot::new(before.revision, Rc::clone(&before.keys), before.keys_hash, older.clone())))
            }
            (false, past) => past.clone(),
        };
        let next = EtcdState {
            revision: if self.changed { self.write_revision } else { before.revision },
            keys: self.keys,
            keys_hash: self.keys_hash,
            leases: Rc::clone(&before.leases),
            compact_revision: before.compact_revision,
            past,
            removed_leases: Rc::clone(&before.removed_leases),
        };
        // Cheap on every step; the walks over all keys only in this crate's unit tests (the
        // simulator's build keeps debug assertions, and they would cost it more than the search).
        assert!(!self.changed || Rc::strong_count(&next.keys) == 1, "a change copied the map");
        if cfg!(test) {
            assert!(next.keys.values().all(|k| k.mod_revision <= next.revision && k.create_revision <= k.mod_revision));
            assert_eq!(
                next.keys_hash,
                next.keys.iter().fold(0u128, |sum, (key, k)| sum.wrapping_add(entry_hash(key, k))),
                "the running hash of the keys went wrong"
            );
        }
        next
    }
}

impl EtcdModel {
    /// The response etcd gives to `input` in `state`, and the state after it.
    pub fn apply(&self, state: &EtcdState, input: &Request) -> Option<(EtcdState, Response)> {
        self.apply_at(state, input, (0, u64::MAX), None)
    }

    /// [`EtcdModel::apply`] for an operation called at `window.0` that takes effect by
    /// `window.1` at the latest (times matter to leases only). `granted`: for a lease grant, the
    /// (id, TTL) the server answered (the id it picked, the TTL it settled on). `None`: etcd
    /// would have refused the request.
    pub fn apply_at(
        &self,
        state: &EtcdState,
        input: &Request,
        window: (u64, u64),
        granted: Option<(i64, i64)>,
    ) -> Option<(EtcdState, Response)> {
        let (call_ns, latest_ns) = window;
        let mut w = Writer {
            before: state,
            keys: Rc::clone(&state.keys),
            keys_hash: state.keys_hash,
            write_revision: state.revision + 1,
            changed: false,
            refused: false,
        };
        let mut leases_after: Option<BTreeMap<i64, LeaseState>> = None;
        let mut removed_after: Option<BTreeSet<i64>> = None;
        let mut compact_after = state.compact_revision;
        let body = match input {
            Request::Range(r) => Response::Range { header_revision: 0, kvs: w.range(r) },
            Request::Put(p) => Response::Put { header_revision: 0, prev_kv: w.put(p) },
            Request::Delete(d) => {
                let (deleted, prev_kvs) = w.delete(d);
                Response::Delete { header_revision: 0, deleted, prev_kvs }
            }
            Request::Txn(t) => {
                let succeeded = t.compare.iter().all(|c| compare(&state.keys, c));
                let branch = if succeeded { &t.success } else { &t.failure };
                let responses = branch
                    .iter()
                    .map(|op| match op {
                        TxnOp::Range(r) => TxnOpResponse::Range { kvs: w.range(r) },
                        TxnOp::Put(p) => TxnOpResponse::Put { prev_kv: w.put(p) },
                        TxnOp::Delete(d) => {
                            let (deleted, prev_kvs) = w.delete(d);
                            TxnOpResponse::Delete { deleted, prev_kvs }
                        }
                    })
                    .collect();
                Response::Txn { header_revision: 0, succeeded, responses }
            }
            Request::LeaseGrant { ttl_s, id } => {
                let id = if *id != 0 { *id } else { granted.map_or(0, |(id, _)| id) };
                let ttl_s = granted.map_or(*ttl_s, |(_, ttl)| ttl);
                // An unknown id (indeterminate, server-picked) is refused before the search.
                if id == 0 || state.leases.contains_key(&id) {
                    return None;
                }
                let mut leases = (*state.leases).clone();
                leases.insert(id, LeaseState { ttl_ns: ttl_ns(ttl_s), renewed_ns: call_ns });
                leases_after = Some(leases);
                if state.removed_leases.contains(&id) {
                    let mut removed = (*state.removed_leases).clone();
                    removed.remove(&id);
                    removed_after = Some(removed);
                }
                Response::LeaseGrant { header_revision: 0, id, ttl_s }
            }
            Request::LeaseRevoke { id } | Request::LeaseExpire { id } => {
                let lease = state.leases.get(id)?;
                if let Request::LeaseExpire { .. } = input {
                    if self.earliest_expiry_ns(lease) > latest_ns {
                        return None;
                    }
                }
                w.delete_leased(*id);
                let mut leases = (*state.leases).clone();
                leases.remove(id);
                leases_after = Some(leases);
                let mut removed = (*state.removed_leases).clone();
                removed.insert(*id);
                removed_after = Some(removed);
                Response::LeaseRevoke { header_revision: 0 }
            }
            Request::LeaseKeepalive { id } => match state.leases.get(id) {
                Some(lease) => {
                    let mut leases = (*state.leases).clone();
                    leases.insert(*id, LeaseState { renewed_ns: call_ns.max(lease.renewed_ns), ..*lease });
                    leases_after = Some(leases);
                    Response::LeaseKeepalive { header_revision: 0, ttl_s: (lease.ttl_ns / NS_PER_S) as i64 }
                }
                None => Response::LeaseKeepalive { header_revision: 0, ttl_s: 0 },
            },
            Request::Compact { revision, .. } => {
                if *revision <= state.compact_revision || *revision > state.revision {
                    return None;
                }
                compact_after = *revision;
                Response::Compact { header_revision: 0 }
            }
            Request::Watch(_) | Request::WatchResponse { .. } | Request::ListTxn { .. } => return None,
        };
        if w.refused {
            return None;
        }
        let mut next = w.finish(self.keep_history);
        if let Some(leases) = leases_after {
            next.leases = Rc::new(leases);
        }
        if let Some(removed) = removed_after {
            next.removed_leases = Rc::new(removed);
        }
        next.compact_revision = compact_after;
        assert!(next.revision == state.revision || next.revision == state.revision + 1);
        let response = with_header(body, next.revision);
        Some((next, response))
    }
}

const NS_PER_S: u64 = 1_000_000_000;

/// Whether some key is attached to `lease`.
fn holds_keys(state: &EtcdState, lease: i64) -> bool {
    state.keys.values().any(|k| k.lease == lease)
}

impl EtcdModel {
    /// The earliest instant `lease` may expire: its TTL after its earliest last renewal, less
    /// the clock slack.
    fn earliest_expiry_ns(&self, lease: &LeaseState) -> u64 {
        lease.renewed_ns.saturating_add(lease.ttl_ns).saturating_sub(self.lease_clock.after_ns(lease.renewed_ns))
    }

    /// Whether an expiry or an indeterminate revoke can have removed `lease` (alive) by `latest_ns`.
    fn may_be_removed_by(&self, id: i64, lease: &LeaseState, latest_ns: u64) -> bool {
        self.earliest_expiry_ns(lease) <= latest_ns
            || self.indeterminate_revoke_calls.get(&id).is_some_and(|&call_ns| call_ns <= latest_ns)
    }
}

fn ttl_ns(ttl_s: i64) -> u64 {
    u64::try_from(ttl_s).unwrap_or(0).saturating_mul(NS_PER_S)
}

/// Whether a response can only come from a request that changed the store.
fn output_says_it_wrote(output: &Response) -> bool {
    match output {
        Response::Put { .. } => true,
        Response::Delete { deleted, .. } => *deleted > 0,
        Response::Txn { responses, .. } => responses.iter().any(|r| match r {
            TxnOpResponse::Put { .. } => true,
            TxnOpResponse::Delete { deleted, .. } => *deleted > 0,
            TxnOpResponse::Range { .. } => false,
        }),
        _ => false,
    }
}

/// Whether `seen` is what the model answered; a keepalive's header and exact TTL are not
/// compared (its leader answers outside raft; the TTL it reports is etcd's business), only
/// whether the lease was found.
fn same_answer(seen: &Response, expected: &Response) -> bool {
    match (seen, expected) {
        (Response::LeaseKeepalive { ttl_s: a, .. }, Response::LeaseKeepalive { ttl_s: b, .. }) => (*a > 0) == (*b > 0),
        _ => seen == expected,
    }
}

fn with_header(mut response: Response, revision: i64) -> Response {
    match &mut response {
        Response::Range { header_revision, .. }
        | Response::Put { header_revision, .. }
        | Response::Delete { header_revision, .. }
        | Response::Txn { header_revision, .. }
        | Response::LeaseGrant { header_revision, .. }
        | Response::LeaseRevoke { header_revision }
        | Response::LeaseKeepalive { header_revision, .. }
        | Response::Compact { header_revision } => *header_revision = revision,
        _ => unreachable!("apply() builds no watch or list_txn responses"),
    }
    response
}

impl Model for EtcdModel {
    type Input = Request;
    type Output = Response;
    type State = EtcdState;
    type PartitionKey = ();

    fn init(&self) -> EtcdState {
        EtcdState {
            revision: self.initial_revision,
            keys: Rc::new(BTreeMap::new()),
            keys_hash: 0,
            leases: Rc::new(BTreeMap::new()),
            compact_revision: 0,
            past: None,
            removed_leases: Rc::new(BTreeSet::new()),
        }
    }

    fn step(&self, state: &EtcdState, input: &Request, output: Option<&Response>) -> Option<EtcdState> {
        // Without times: the call as early as can be, expiry allowed any time.
        self.step_before(state, input, output, (0, u64::MAX))
    }

    fn is_timed(&self) -> bool {
        self.leases
    }

    fn step_before(
        &self,
        state: &EtcdState,
        input: &Request,
        output: Option<&Response>,
        window: (u64, u64),
    ) -> Option<EtcdState> {
        let granted = match output {
            Some(Response::LeaseGrant { id, ttl_s, .. }) => Some((*id, *ttl_s)),
            _ => None,
        };
        // Removing a keyless lease is done by the keepalive that observes it (see the type's docs).
        match (input, output) {
            (Request::LeaseExpire { id }, _) | (Request::LeaseRevoke { id }, None) if !holds_keys(state, *id) => {
                return None;
            }
            (Request::LeaseKeepalive { id }, Some(Response::LeaseKeepalive { ttl_s: 0, .. })) => {
                if let Some(lease) = state.leases.get(id) {
                    if holds_keys(state, *id) || !self.may_be_removed_by(*id, lease, window.1) {
                        return None;
                    }
                    let mut next = state.clone();
                    Rc::make_mut(&mut next.leases).remove(id);
                    Rc::make_mut(&mut next.removed_leases).insert(*id);
                    return Some(next);
                }
            }
            _ => {}
        }
        let (next, expected) = self.apply_at(state, input, window, granted)?;
        match output {
            Some(seen) if !same_answer(seen, &expected) => None,
            None if self.contradicts_facts(state, &next, input) => None,
            _ => Some(next),
        }
    }

    fn partition(&self, _input: &Request) {}

    const PRUNES: bool = true;

    /// Revisions kill a misplaced indeterminate write at once (see `cannot_follow`).
    const INDETERMINATE_FIRST: bool = false;

    /// An operation answered with header revision `h` is accepted only in a state at revision
    /// `h - 1` if its output says it changed something (a put; a delete or a txn branch that
    /// deleted keys or put one), else at `h`: the model's answer would differ otherwise. The
    /// revision never goes down, so a state past that can never accept it.
    /// Also: an answer that needs a lease alive (a keepalive answered with a TTL, a put with it,
    /// a revoke of it answered `ok`) after that lease was removed, when no other grant of its id
    /// is in the history (see "Removed leases").
    fn cannot_follow(&self, state: &EtcdState, input: &Request, output: &Response) -> bool {
        let needs_alive = match (input, output) {
            (Request::LeaseKeepalive { id }, Response::LeaseKeepalive { ttl_s, .. }) if *ttl_s > 0 => *id,
            (Request::Put(p), Response::Put { .. }) => p.lease,
            (Request::LeaseRevoke { id }, Response::LeaseRevoke { .. }) => *id,
            _ => 0,
        };
        self.ceiling(input, output).is_some_and(|c| state.revision > c)
            || (needs_alive != 0
                && state.removed_leases.contains(&needs_alive)
                && !self.granted_twice.contains(&needs_alive))
    }

    /// The revision a state must not be past to accept the answer (see `cannot_follow`).
    fn ceiling(&self, _input: &Request, output: &Response) -> Option<i64> {
        // A keepalive's header is not checked (see the type's docs).
        (!matches!(output, Response::LeaseKeepalive { .. }))
            .then(|| output.header_revision() - i64::from(output_says_it_wrote(output)))
    }

    fn progress(&self, state: &EtcdState) -> i64 {
        state.revision
    }

    fn is_read_only(&self, input: &Request) -> bool {
        input.is_read_only()
    }

    fn describe_partition(&self, _key: &()) -> String {
        "(the whole key space: the etcd model is not partitioned)".into()
    }

    fn describe_operation(&self, input: &Request, output: Option<&Response>) -> String {
        describe(input, output)
    }

    fn describe_state(&self, state: &EtcdState) -> String {
        const KEYS_SHOWN: usize = 32;
        let mut s = format!("revision {}, {} keys", state.revision, state.keys.len());
        for (i, (key, k)) in state.keys.iter().enumerate() {
            if i == KEYS_SHOWN {
                s.push_str(", …");
                break;
            }
            let _ = write!(s, "{} {}", if i == 0 { ":" } else { "," }, key_value(key, k));
        }
        s
    }
}

impl EtcdModel {
    /// Whether the write that took `before` to `after` (by `input`, whose answer is unknown)
    /// touched a key where an answer of the history says nothing did.
    fn contradicts_facts(&self, before: &EtcdState, after: &EtcdState, input: &Request) -> bool {
        if after.revision == before.revision || self.facts.is_empty() {
            return false;
        }
        let r = after.revision;
        let touched = |key: &Bytes| match (before.keys.get(key), after.keys.get(key)) {
            (_, Some(k)) if k.mod_revision == r => self.facts.forbids_put(key, r),
            (Some(_), None) => self.facts.forbids_delete(key, r),
            _ => false,
        };
        let in_range =
            |key: &Bytes, range_end: &Bytes| select(&before.keys, key, range_end).into_iter().any(|(k, _)| touched(k));
        let touched_by = |op: &TxnOp| match op {
            TxnOp::Put(p) => touched(&p.key),
            TxnOp::Delete(d) => in_range(&d.key, &d.range_end),
            TxnOp::Range(_) => false,
        };
        match input {
            Request::Put(p) => touched(&p.key),
            Request::Delete(d) => in_range(&d.key, &d.range_end),
            Request::Txn(t) => t.success.iter().chain(&t.failure).any(touched_by),
            Request::LeaseRevoke { id } | Request::LeaseExpire { id } => {
                before.keys.iter().any(|(k, s)| s.lease == *id && touched(k))
            }
            _ => false,
        }
    }

    fn check_range(&self, r: &RangeRequest) -> Result<(), String> {
        if r.revision != 0 && !self.keep_history {
            return Err("a range at a past revision needs the model's keep_history".into());
        }
        Ok(())
    }
}

impl HistoryModel for EtcdModel {
    fn supports(&self, request: &Request) -> Result<(), String> {
        match request {
            Request::Range(r) => self.check_range(r),
            Request::Put(_) | Request::Delete(_) => Ok(()),
            Request::Txn(t) => {
                for op in t.success.iter().chain(&t.failure) {
                    if let TxnOp::Range(r) = op {
                        self.check_range(r)?;
                    }
                }
                Ok(())
            }
            Request::LeaseGrant { .. }
            | Request::LeaseRevoke { .. }
            | Request::LeaseKeepalive { .. }
            | Request::LeaseExpire { .. }
            | Request::Compact { .. } => Ok(()),
            Request::Watch(_) | Request::WatchResponse { .. } => {
                Err(format!("{}: watches are for the watch checks, not a model", request.type_name()))
            }
            Request::ListTxn { .. } => Err("list_txn: list-append transactions are for the transaction checks".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::TxnRequest;

    fn recomputed(state: &EtcdState) -> u128 {
        state.keys.iter().fold(0u128, |sum, (key, k)| sum.wrapping_add(entry_hash(key, k)))
    }

    /// The running hash of the keys stays the hash of the map, whatever writes change it: puts
    /// over existing keys, deletes of one key and of ranges, txns, lease revokes.
    #[test]
    fn the_running_key_hash_follows_every_kind_of_write() {
        let model = EtcdModel { leases: true, ..EtcdModel::default() };
        let mut state = model.init();
        let mut seed: u64 = 7;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let key = |i: u64| Bytes::from(format!("k{i}"));
        let put = |k: u64, v: u64, lease: i64| PutRequest {
            key: key(k),
            value: format!("v{v}").as_str().into(),
            lease,
            prev_kv: false,
        };
        let mut writes = 0;
        for step in 0..2_000u64 {
            let request = match next(6) {
                0 | 1 => Request::Put(put(next(5), step, if next(2) == 0 { 0 } else { 1 + next(2) as i64 })),
                2 => Request::Delete(DeleteRequest { key: key(next(5)), range_end: Bytes::default(), prev_kv: false }),
                3 => Request::Delete(DeleteRequest { key: key(next(3)), range_end: key(5), prev_kv: false }),
                4 => Request::Txn(TxnRequest {
                    compare: vec![],
                    success: vec![TxnOp::Put(put(next(5), step, 0)), TxnOp::Put(put(next(5), step + 1, 0))],
                    failure: vec![],
                }),
                _ => match next(2) {
                    0 => Request::LeaseGrant { ttl_s: 10, id: 1 + next(2) as i64 },
                    _ => Request::LeaseRevoke { id: 1 + next(2) as i64 },
                },
            };
            if let Some((after, _)) = model.apply(&state, &request) {
                writes += u64::from(after.revision != state.revision);
                state = after;
            }
            assert_eq!(state.keys_hash, recomputed(&state), "after step {step}: {request:?}");
        }
        assert!(writes > 500 && !state.keys.is_empty(), "the scenario wrote too little: {writes} writes");
    }

    /// Equal maps reached in different orders hash the same (the sum does not depend on order).
    #[test]
    fn equal_key_maps_reached_in_different_orders_hash_the_same() {
        let model = EtcdModel::default();
        let put =
            |k: &str, v: &str| Request::Put(PutRequest { key: k.into(), value: v.into(), lease: 0, prev_kv: false });
        let both = |first: &str, second: &str| {
            let (s, _) = model.apply(&model.init(), &put(first, "x")).unwrap();
            let (s, _) = model.apply(&s, &put(second, "x")).unwrap();
            let del = Request::Delete(DeleteRequest { key: "a".into(), range_end: Bytes::default(), prev_kv: false });
            model.apply(&s, &del).unwrap().0
        };
        let (ab, ba) = (both("a", "b"), both("b", "a"));
        // The surviving key `b` was written at a different revision in each: different states.
        assert_ne!(ab, ba);
        assert_ne!(ab.keys_hash, ba.keys_hash);
        let (s1, _) = model.apply(&model.init(), &put("c", "y")).unwrap();
        let (s2, _) = model.apply(&model.init(), &put("c", "y")).unwrap();
        assert_eq!(s1.keys_hash, s2.keys_hash);
        assert_eq!(s1.keys_hash, recomputed(&s1));
    }

    /// An answer showed key `a` at revision 5 as created at 2 and last written at 3: an
    /// indeterminate put of `a` may land at revision 3 or at 6, not at 4 or 5, and an
    /// indeterminate delete of `a` not at 2 to 5. Other keys, and answered writes, are not
    /// concerned.
    #[test]
    fn an_answer_that_showed_a_key_rules_out_indeterminate_writes_of_it_in_its_span() {
        let mut facts = KeyFacts::default();
        let kv = |key: &str| KeyValue {
            key: key.into(),
            value: "x".into(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 0,
        };
        facts.saw(&kv("a"), 5);
        let model = EtcdModel { facts: Rc::new(facts), ..EtcdModel::default() };
        let at = |revision: i64, keys: &[&str]| {
            let mut state = model.init();
            state.revision = revision;
            let map = keys
                .iter()
                .map(|k| {
                    (
                        Bytes::from(*k),
                        KeyState { value: "x".into(), create_revision: 1, mod_revision: 1, version: 1, lease: 0 },
                    )
                })
                .collect();
            state.keys = Rc::new(map);
            state.keys_hash = recomputed(&state);
            state
        };
        let put = |key: &str| Request::Put(PutRequest { key: key.into(), value: "y".into(), lease: 0, prev_kv: false });
        let delete =
            |key: &str| Request::Delete(DeleteRequest { key: key.into(), range_end: Bytes::default(), prev_kv: false });
        // Puts: the write lands at the state's revision + 1.
        assert!(model.step(&at(2, &["a"]), &put("a"), None).is_some(), "a put at 3 is the one it showed");
        assert!(model.step(&at(3, &["a"]), &put("a"), None).is_none(), "at 4 it would show mod 4");
        assert!(model.step(&at(4, &["a"]), &put("a"), None).is_none(), "at 5 too");
        assert!(model.step(&at(5, &["a"]), &put("a"), None).is_some(), "after 5 nothing was seen");
        assert!(model.step(&at(3, &[]), &put("b"), None).is_some(), "another key");
        // Deletes, and a range delete that would take `a` with it.
        assert!(model.step(&at(1, &["a"]), &delete("a"), None).is_none(), "deleted at 2: created later");
        assert!(model.step(&at(4, &["a"]), &delete("a"), None).is_none());
        assert!(model.step(&at(5, &["a"]), &delete("a"), None).is_some());
        let everything = Request::Delete(DeleteRequest { key: "a".into(), range_end: "\0".into(), prev_kv: false });
        assert!(model.step(&at(3, &["a", "b"]), &everything, None).is_none());
        assert!(model.step(&at(3, &["b"]), &everything, None).is_some(), "`a` is not there to delete");
        // An answered put is placed by its header revision, and checked by its output alone.
        let answered = Response::Put { header_revision: 4, prev_kv: None };
        assert!(model.step(&at(3, &["a"]), &put("a"), Some(&answered)).is_some());
    }
}
