//! From a recorded history to a linearizability verdict.
//!
//! [`check_history`] validates each operation, drops the `failed` ones (they certainly did not
//! happen) and the watch lines (what watchers received is for the watch checks, a later part;
//! [`HistoryCheck::watch_lines_skipped`] counts them so that reports can say so), refuses the
//! history if the model cannot judge one of the remaining operations, and runs
//! [`crate::linearizability::check`].
//!
//! # Pinning observed indeterminate writes
//!
//! An indeterminate write is optional to the search: it may have happened at any time after its
//! call, or never, and trying all of that is what makes indeterminate operations expensive. But
//! when a write is the only request in the whole history that writes a given value to a given key
//! (recorders write unique values, as etcd's robustness tests and Jepsen do), then any `ok`
//! response showing that key with that value (a range, a `prev_kv`, a txn's responses) proves the
//! write happened, before that response came back. Such a write is *pinned*: it must be
//! linearized, by the earliest return of a response that shows its value, with any output. This
//! only states something every valid linearization already satisfies, so it changes no verdict,
//! only the time to reach it. (etcd's robustness tests patch their histories the same way.)
//! Writes whose value is seen before they were even called are left alone: the search then
//! reports the violation.

use std::fmt;
use std::str::FromStr;

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{CompareTarget, KeyValue, Operation, Outcome, Request, Response, TxnOp, TxnOpResponse};
use crate::linearizability::{self, CheckOptions, CheckResult, Op};
use crate::models::{EtcdModel, HistoryModel, KeyFacts, LeaseClockSlack, RegisterModel};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// [`RegisterModel`]: per-key registers, partitioned by key.
    Register,
    /// [`EtcdModel`]: the key space with the global revision, starting empty at revision 1.
    Etcd,
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" => Ok(ModelKind::Register),
            "etcd" => Ok(ModelKind::Etcd),
            _ => Err(format!("unknown model {s:?} (expected \"register\" or \"etcd\")")),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelKind::Register => "register",
            ModelKind::Etcd => "etcd",
        })
    }
}

/// Why a history could not be checked at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// The operation's id: its position in the history, from 0 (line `id + 1` of a file).
    pub id: usize,
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op {} (line {}): {}", self.id, self.id + 1, self.message)
    }
}

impl std::error::Error for CheckError {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryCheck {
    pub result: CheckResult,
    /// Operations in the history.
    pub ops_total: usize,
    /// `failed` operations, dropped.
    pub failed_dropped: usize,
    /// `watch` and `watch_response` lines, not checked here.
    pub watch_lines_skipped: usize,
    /// Indeterminate writes whose value a response showed (see the module docs).
    pub indeterminate_pinned: usize,
    /// Indeterminate lease grants whose id the server was to pick, left out (see
    /// `lease_expiries`).
    pub unknown_grants_dropped: usize,
    /// Indeterminate keepalives and compactions, and indeterminate grants of leases nothing
    /// names, left out (see `is_unneeded_indeterminate_op`).
    pub unneeded_ops_dropped: usize,
    /// Lease expiries added to the search (one per lease grant not failed); their operation ids
    /// follow the history's: `ops_total + k` is the expiry of the k-th grant (see
    /// [`HistoryCheck::describe_id`]).
    pub lease_expiries: Vec<LeaseExpiry>,
}

/// The checker's stand-in for the expiry of a lease (see [`crate::models::EtcdModel`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseExpiry {
    /// Its operation id in reports (past the history's).
    pub id: usize,
    /// The grant's operation id.
    pub grant: usize,
    pub lease: i64,
    /// The earliest it can happen: the grant's call plus the TTL.
    pub earliest_ns: u64,
}

impl HistoryCheck {
    /// What operation `id` of a report is: "op N", or the expiry of a lease.
    pub fn describe_id(&self, id: usize) -> String {
        match self.lease_expiries.iter().find(|e| e.id == id) {
            Some(e) => format!("expiry of lease {} (granted by op {})", e.lease, e.grant),
            None => format!("op {id}"),
        }
    }
}

/// Checks `ops` (a history, operation `i` having id `i`) for linearizability against `model`.
pub fn check_history(ops: &[Operation], model: ModelKind, options: &CheckOptions) -> Result<HistoryCheck, CheckError> {
    match model {
        ModelKind::Register => check_with(&RegisterModel, ops, options),
        ModelKind::Etcd => {
            let model = EtcdModel {
                lease_clock: lease_clock_slack(options),
                indeterminate_revoke_calls: std::rc::Rc::new(indeterminate_revoke_calls(ops)),
                facts: std::rc::Rc::new(key_facts(ops)),
                granted_twice: std::rc::Rc::new(granted_twice(ops)),
                ..etcd_model_for(ops)
            };
            check_with(&model, ops, options)
        }
    }
}

fn lease_clock_slack(options: &CheckOptions) -> LeaseClockSlack {
    LeaseClockSlack::new(options.lease_clock_slack_ms.saturating_mul(1_000_000), &options.lease_clock_jumps)
}

/// The etcd model with what `ops` needs: the store's past for ranges at a revision, times for
/// leases.
pub fn etcd_model_for(ops: &[Operation]) -> EtcdModel {
    let at_revision = |r: &crate::history::RangeRequest| r.revision != 0;
    let keep_history = ops.iter().any(|op| match &op.op {
        Request::Range(r) => at_revision(r),
        Request::Txn(t) => t.success.iter().chain(&t.failure).any(|o| matches!(o, TxnOp::Range(r) if at_revision(r))),
        _ => false,
    });
    let leases = ops.iter().any(|op| matches!(op.op, Request::LeaseGrant { .. }));
    EtcdModel { keep_history, leases, ..EtcdModel::default() }
}

/// [`check_history`] with any model of etcd requests.
pub fn check_with<M: HistoryModel>(
    model: &M,
    ops: &[Operation],
    options: &CheckOptions,
) -> Result<HistoryCheck, CheckError> {
    let mut failed_dropped = 0;
    let mut watch_lines_skipped = 0;
    let mut indeterminate_pinned = 0;
    let mut unknown_grants_dropped = 0;
    let mut unneeded_ops_dropped = 0;
    let pins = observed_by(ops);
    let referenced = referenced_leases(ops);
    let compared_values = compared_values(ops);
    let mut classes: BTreeMap<(u8, &[u8], &[u8], i64), u64> = BTreeMap::new();
    let mut searched = Vec::with_capacity(ops.len());
    for (id, op) in ops.iter().enumerate() {
        // A history built in code has not been through the reader: validate here too, since
        // an output of the wrong type would otherwise show up as a confusing violation.
        op.validate().map_err(|message| CheckError { id, message })?;
        if op.op.is_watch() || op.op.is_list_txn() {
            watch_lines_skipped += 1;
            continue;
        }
        if op.outcome == Outcome::Failed {
            failed_dropped += 1;
            continue;
        }
        model.supports(&op.op).map_err(|why| CheckError { id, message: format!("{}: {why}", op.op) })?;
        if is_unknown_grant(op) {
            // Checked in `lease_expiries`: nobody can use the lease it may have made.
            unknown_grants_dropped += 1;
            continue;
        }
        if is_unneeded_indeterminate_op(op, &referenced) {
            unneeded_ops_dropped += 1;
            continue;
        }
        let return_ns = match op.outcome {
            Outcome::Ok => Some(op.return_ns),
            Outcome::Indeterminate => {
                let pin = written(&op.op).filter_map(|kv| pins.get(&kv).copied().flatten()).min();
                let pin = pin.filter(|&seen_ns| seen_ns >= op.call_ns);
                indeterminate_pinned += usize::from(pin.is_some());
                pin
            }
            Outcome::Failed => unreachable!("dropped above"),
        };
        let interchangeable = match (return_ns, interchangeable_class(&op.op, &pins, &compared_values)) {
            (None, Some(class)) => {
                let next = classes.len() as u64;
                Some(*classes.entry(class).or_insert(next))
            }
            _ => None,
        };
        searched.push(Op {
            id,
            client: op.client,
            call_ns: op.call_ns,
            return_ns,
            input: op.op.clone(),
            output: op.output.clone(),
            interchangeable,
        });
    }
    let lease_expiries = lease_expiries(ops, &referenced)?;
    let slack = lease_clock_slack(options);
    for e in &lease_expiries {
        let expiry = Request::LeaseExpire { id: e.lease };
        model.supports(&expiry).map_err(|why| CheckError { id: e.grant, message: why })?;
        let grant = &ops[e.grant];
        searched.push(Op {
            id: e.id,
            client: grant.client,
            // The model allows the expiry from its TTL after the renewal less the clock slack;
            // as a candidate it must come no later.
            // (The slack is largest for the earliest renewal, the grant's call.)
            call_ns: e.earliest_ns.saturating_sub(slack.after_ns(grant.call_ns)),
            return_ns: None,
            input: expiry,
            output: None,
            interchangeable: None,
        });
    }
    let result = linearizability::check(model, searched, options);
    Ok(HistoryCheck {
        result,
        ops_total: ops.len(),
        failed_dropped,
        watch_lines_skipped,
        indeterminate_pinned,
        unknown_grants_dropped,
        unneeded_ops_dropped,
        lease_expiries,
    })
}

/// Lease ids that some request or `ok` answer names other than a grant's own request: a put or a
/// txn put attaching a key to it, a keepalive or a revoke of it, a key-value showing it.
fn referenced_leases(ops: &[Operation]) -> BTreeSet<i64> {
    let mut used = BTreeSet::new();
    for op in ops {
        add_leases_named(op, &mut used);
    }
    used.remove(&0);
    used
}

/// Adds the lease ids `op` names other than as a grant: in its request (a put or txn put
/// attaching a key, a keepalive, a revoke) or in the key-values of its answer.
fn add_leases_named(op: &Operation, used: &mut BTreeSet<i64>) {
    match &op.op {
        Request::LeaseRevoke { id } | Request::LeaseKeepalive { id } => {
            used.insert(*id);
        }
        Request::Put(p) => {
            used.insert(p.lease);
        }
        Request::Txn(t) => used.extend(t.success.iter().chain(&t.failure).filter_map(|o| match o {
            TxnOp::Put(p) => Some(p.lease),
            _ => None,
        })),
        _ => {}
    }
    if let Some(output) = &op.output {
        used.extend(shown(output).iter().map(|kv| kv.lease));
    }
}

/// Indeterminate requests left out of the search because no linearization needs them
/// (leaving out an optional step only ever removes linearizations, so this is sound; the
/// argument that it removes none that matters, completeness, is per kind):
///
/// - a keepalive (its answer unknown): at most it renews a live lease, i.e. moves the earliest
///   instant the lease may expire later; without it every expiry allowed with it is still
///   allowed, and no answer depends on a renewal otherwise (keepalive answers are checked only
///   for "found or not", and renewing never revives a lease);
/// - a grant (with the id the client picked) of a lease nothing else names ([`referenced_leases`]):
///   no key can carry it and no request finds it or not, so whether it exists is invisible;
/// - a compaction: at most it raises the compacted revision, which only ever makes answers
///   impossible (an `ok` compaction at or below it, an `ok` range at a revision below it);
///   no answer needs a compaction to have happened (refusals of compacted revisions are failed
///   operations, left out). In a history with compactions from a fault schedule, each pending
///   one multiplied the states of the search (seed 40 of the simulator's lease workload).
///
/// Each such step, left in, doubles the states the search may visit for as long as it is
/// pending: to the end of the history, since it has no return.
fn is_unneeded_indeterminate_op(op: &Operation, referenced: &BTreeSet<i64>) -> bool {
    op.outcome == Outcome::Indeterminate
        && match op.op {
            Request::LeaseKeepalive { .. } | Request::Compact { .. } => true,
            Request::LeaseGrant { id, .. } => id != 0 && !referenced.contains(&id),
            _ => false,
        }
}

/// For each lease, the earliest call of an indeterminate revoke of it
/// ([`EtcdModel::indeterminate_revoke_calls`]).
fn indeterminate_revoke_calls(ops: &[Operation]) -> BTreeMap<i64, u64> {
    let mut calls: BTreeMap<i64, u64> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.outcome == Outcome::Indeterminate) {
        if let Request::LeaseRevoke { id } = op.op {
            let call = calls.entry(id).or_insert(op.call_ns);
            *call = (*call).min(op.call_ns);
        }
    }
    calls
}

/// An indeterminate grant whose id the server was to pick: which lease it made (if any) is
/// unknown.
fn is_unknown_grant(op: &Operation) -> bool {
    matches!(op.op, Request::LeaseGrant { id: 0, .. }) && op.outcome == Outcome::Indeterminate
}

/// The lease ids the history uses (in requests or answers) that no grant with a known id made.
fn orphan_leases(ops: &[Operation]) -> BTreeSet<i64> {
    let mut granted = BTreeSet::new();
    let mut used = BTreeSet::new();
    for op in ops.iter().filter(|op| op.outcome != Outcome::Failed) {
        if let Request::LeaseGrant { id, .. } = &op.op {
            granted.insert(*id);
            if let Some(Response::LeaseGrant { id, .. }) = &op.output {
                granted.insert(*id);
            }
        }
        add_leases_named(op, &mut used);
    }
    used.remove(&0);
    used.difference(&granted).copied().collect()
}

/// One expiry per lease grant that may have happened. A grant whose id is unknown (indeterminate,
/// server-picked) is left out of the search: the lease it may have made is one nobody knows the
/// id of, so nobody can attach a key to it or find it, and granting changes no revision — unless
/// the history uses a lease id that no known grant made, which could be that one: then the
/// history is refused.
fn lease_expiries(ops: &[Operation], referenced: &BTreeSet<i64>) -> Result<Vec<LeaseExpiry>, CheckError> {
    let mut expiries = Vec::new();
    let mut orphans: Option<BTreeSet<i64>> = None;
    for (grant, op) in ops.iter().enumerate() {
        let Request::LeaseGrant { ttl_s, id } = op.op else { continue };
        if is_unneeded_indeterminate_op(op, referenced) {
            // Left out of the search, and with it its expiry.
            continue;
        }
        if is_unknown_grant(op) {
            let orphans = orphans.get_or_insert_with(|| orphan_leases(ops));
            if let Some(lease) = orphans.first() {
                return Err(CheckError {
                    id: grant,
                    message: format!(
                        "an indeterminate lease_grant whose id the server was to pick, and lease {lease} is used \
                         but granted by no grant with a known id: it may be this one, which cannot be followed \
                         (recorders should pick lease ids)"
                    ),
                });
            }
            continue;
        }
        let (lease, granted_ttl_s) = match (&op.outcome, &op.output) {
            (Outcome::Failed, _) => continue,
            (_, Some(Response::LeaseGrant { id: answered, ttl_s: answered_ttl, .. })) => {
                (if id != 0 { id } else { *answered }, (*answered_ttl).min(ttl_s))
            }
            _ => (id, ttl_s),
        };
        if lease == 0 {
            return Err(CheckError {
                id: grant,
                message: "an indeterminate lease_grant whose id the server was to pick: which lease it made is \
                          unknown (recorders should pick lease ids)"
                    .into(),
            });
        }
        let ttl_ns = u64::try_from(granted_ttl_s).unwrap_or(0).saturating_mul(1_000_000_000);
        expiries.push(LeaseExpiry {
            id: ops.len() + expiries.len(),
            grant,
            lease,
            earliest_ns: op.call_ns.saturating_add(ttl_ns),
        });
    }
    Ok(expiries)
}

/// A key and a value, as bytes.
type KeyAndValue<'h> = (&'h [u8], &'h [u8]);

/// The (key, value) pairs a request may write: its puts, in either branch of a txn.
fn written(request: &Request) -> impl Iterator<Item = KeyAndValue<'_>> {
    let (single, txn) = match request {
        Request::Put(p) => (Some((p.key.as_slice(), p.value.as_slice())), None),
        Request::Txn(t) => (None, Some(t.success.iter().chain(&t.failure))),
        _ => (None, None),
    };
    let from_txn = txn.into_iter().flatten().filter_map(|op| match op {
        TxnOp::Put(p) => Some((p.key.as_slice(), p.value.as_slice())),
        _ => None,
    });
    single.into_iter().chain(from_txn)
}

/// The key-values an `ok` response shows as they were at some instant.
fn shown(response: &Response) -> Vec<&KeyValue> {
    let mut kvs = Vec::new();
    match response {
        Response::Range { kvs: found, .. } => kvs.extend(found),
        Response::Put { prev_kv, .. } => kvs.extend(prev_kv),
        Response::Delete { prev_kvs, .. } => kvs.extend(prev_kvs),
        Response::Txn { responses, .. } => {
            for r in responses {
                match r {
                    TxnOpResponse::Range { kvs: found } => kvs.extend(found),
                    TxnOpResponse::Put { prev_kv } => kvs.extend(prev_kv),
                    TxnOpResponse::Delete { prev_kvs, .. } => kvs.extend(prev_kvs),
                }
            }
        }
        _ => {}
    }
    kvs
}

/// The class of indeterminate operations `request` is interchangeable with, if any (see
/// [`crate::linearizability`], "Interchangeable indeterminate operations"): no other operation
/// of the history can tell apart two of one class once they took effect.
///
/// - A put whose value nobody can see: written by this request alone, shown by no response, and
///   compared by no txn. Puts of one key and lease then differ only in that value (their
///   `prev_kv` changes only their own output, which is unknown).
/// - Deletes of the same keys: the same request but for `prev_kv`.
fn interchangeable_class<'h>(
    request: &'h Request,
    pins: &BTreeMap<KeyAndValue<'h>, Option<u64>>,
    compared_values: &BTreeSet<&[u8]>,
) -> Option<(u8, &'h [u8], &'h [u8], i64)> {
    match request {
        Request::Put(p) => {
            let unseen = pins.get(&(p.key.as_slice(), p.value.as_slice())) == Some(&None)
                && !compared_values.contains(p.value.as_slice());
            unseen.then_some((0, p.key.as_slice(), &[][..], p.lease))
        }
        Request::Delete(d) => Some((1, d.key.as_slice(), d.range_end.as_slice(), 0)),
        _ => None,
    }
}

/// Lease ids that more than one grant not known to have failed names (by its request, or by its
/// answer for a server-picked id): a removed lease with such an id may be alive again
/// ([`EtcdModel::granted_twice`]).
fn granted_twice(ops: &[Operation]) -> BTreeSet<i64> {
    let mut grants: BTreeMap<i64, usize> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.outcome != Outcome::Failed) {
        if let Request::LeaseGrant { id, .. } = op.op {
            let id = match (&op.output, id) {
                (_, id) if id != 0 => id,
                (Some(Response::LeaseGrant { id, .. }), _) => *id,
                _ => continue,
            };
            *grants.entry(id).or_default() += 1;
        }
    }
    grants.into_iter().filter(|&(_, n)| n > 1).map(|(id, _)| id).collect()
}

/// What the `ok` answers showed of each key, and at which revision (see
/// [`KeyFacts`]): a range's key-values as of its revision (its header, or
/// the revision asked for), a put's `prev_kv` and a delete's `prev_kvs` as of the revision
/// before theirs. Txns are left out (their reads may follow their own writes).
fn key_facts(ops: &[Operation]) -> KeyFacts {
    let mut facts = KeyFacts::default();
    for op in ops {
        let (Outcome::Ok, Some(output)) = (op.outcome, &op.output) else { continue };
        match (&op.op, output) {
            (Request::Range(r), Response::Range { header_revision, kvs }) => {
                let at = if r.revision != 0 { r.revision } else { *header_revision };
                kvs.iter().for_each(|kv| facts.saw(kv, at));
            }
            (Request::Put(_), Response::Put { header_revision, prev_kv: Some(kv) }) => {
                facts.saw(kv, header_revision - 1)
            }
            (Request::Delete(_), Response::Delete { header_revision, prev_kvs, .. }) => {
                prev_kvs.iter().for_each(|kv| facts.saw(kv, header_revision - 1));
            }
            _ => {}
        }
    }
    facts
}

/// Every value some txn compares a key with (in any outcome: a compare's request says it).
fn compared_values(ops: &[Operation]) -> BTreeSet<&[u8]> {
    let mut values = BTreeSet::new();
    for op in ops {
        if let Request::Txn(t) = &op.op {
            for c in &t.compare {
                if let CompareTarget::Value(v) = &c.target {
                    values.insert(v.as_slice());
                }
            }
        }
    }
    values
}

/// For each (key, value) written by exactly one request of the history, the earliest return of
/// an `ok` response that shows it (`None` if none does); pairs written more than once are absent.
fn observed_by(ops: &[Operation]) -> BTreeMap<KeyAndValue<'_>, Option<u64>> {
    let mut writers: BTreeMap<KeyAndValue<'_>, usize> = BTreeMap::new();
    for op in ops {
        for kv in written(&op.op) {
            *writers.entry(kv).or_default() += 1;
        }
    }
    let mut seen: BTreeMap<KeyAndValue<'_>, Option<u64>> =
        writers.into_iter().filter(|&(_, n)| n == 1).map(|(kv, _)| (kv, None)).collect();
    for op in ops {
        let (Outcome::Ok, Some(output)) = (op.outcome, &op.output) else { continue };
        for kv in shown(output) {
            if let Some(first) = seen.get_mut(&(kv.key.as_slice(), kv.value.as_slice())) {
                *first = Some(first.map_or(op.return_ns, |t| t.min(op.return_ns)));
            }
        }
    }
    seen
}
