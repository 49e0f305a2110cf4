//! Each key an independent register.

use std::fmt::Write as _;

use super::{compare_holds, HistoryModel};
use crate::history::{
    Bytes, CompareTarget, DeleteRequest, KeyValue, PutRequest, RangeRequest, Request, Response, TxnOp, TxnOpResponse,
};
use crate::linearizability::Model;

/// Per-key registers: the state of a key is its value and version, or absent.
///
/// Supported: `range` of one key at the latest revision, `put` without lease, `delete` of one
/// key, and `txn`s whose compares (on `value` or `version`) and requests all name the same single
/// key — compare-and-set. Checked: the value and version of every key-value returned (ranges,
/// `prev_kv`s), `deleted`, `succeeded`. Not checked: revisions (`header_revision`,
/// `mod_revision`, `create_revision`), which are global and so outside a per-key model; use
/// [`super::EtcdModel`] for them. Versions are per key (a put adds 1, a delete resets to absent),
/// so they are checked.
///
/// Partitioned by key: the partitions are checked separately.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegisterValue {
    pub value: Bytes,
    /// Puts since the key was created (1 after the first).
    pub version: i64,
}

/// `None`: the key does not exist.
pub type RegisterState = Option<RegisterValue>;

/// The single key a supported request names.
fn key_of(request: &Request) -> Option<&Bytes> {
    match request {
        Request::Range(r) => Some(&r.key),
        Request::Put(p) => Some(&p.key),
        Request::Delete(d) => Some(&d.key),
        Request::Txn(t) => {
            t.compare.first().map(|c| &c.key).or_else(|| t.success.iter().chain(&t.failure).map(txn_op_key).next())
        }
        _ => None,
    }
}

fn txn_op_key(op: &TxnOp) -> &Bytes {
    match op {
        TxnOp::Range(r) => &r.key,
        TxnOp::Put(p) => &p.key,
        TxnOp::Delete(d) => &d.key,
    }
}

fn check_range(r: &RangeRequest) -> Result<(), String> {
    if !r.range_end.is_empty() {
        return Err("a range over several keys (range_end set) spans registers".into());
    }
    if r.revision != 0 {
        return Err("a range at a past revision needs revisions, which registers do not have".into());
    }
    Ok(())
}

fn check_delete(d: &DeleteRequest) -> Result<(), String> {
    if !d.range_end.is_empty() {
        return Err("a delete over several keys (range_end set) spans registers".into());
    }
    Ok(())
}

/// Whether a returned key-value is the register's value.
fn kv_matches(state: &RegisterState, kv: &KeyValue) -> bool {
    state.as_ref().is_some_and(|s| kv.value == s.value && kv.version == s.version)
}

fn kvs_match(state: &RegisterState, key: &Bytes, kvs: &[KeyValue]) -> bool {
    match (state, kvs) {
        (None, []) => true,
        (Some(_), [kv]) => kv.key == *key && kv_matches(state, kv),
        _ => false,
    }
}

/// A put: the next state, and whether the returned `prev_kv` fits (`None`: no output to check).
fn put(state: &RegisterState, p: &PutRequest, prev_kv: Option<&Option<KeyValue>>) -> (RegisterState, bool) {
    let ok = match prev_kv {
        // prev_kv is only filled when asked for; when asked, it is the key's previous value.
        Some(prev) if p.prev_kv => match (state, prev) {
            (None, None) => true,
            (Some(_), Some(kv)) => kv.key == p.key && kv_matches(state, kv),
            _ => false,
        },
        Some(prev) => prev.is_none(),
        None => true,
    };
    let version = state.as_ref().map_or(0, |s| s.version) + 1;
    (Some(RegisterValue { value: p.value.clone(), version }), ok)
}

/// A delete: whether `deleted` and `prev_kvs` fit (the next state is always absent).
fn delete(state: &RegisterState, d: &DeleteRequest, output: Option<(i64, &[KeyValue])>) -> bool {
    let Some((deleted, prev_kvs)) = output else { return true };
    let expected = i64::from(state.is_some());
    deleted == expected && if d.prev_kv { kvs_match(state, &d.key, prev_kvs) } else { prev_kvs.is_empty() }
}

impl Model for RegisterModel {
    type Input = Request;
    type Output = Response;
    type State = RegisterState;
    type PartitionKey = Bytes;

    fn init(&self) -> RegisterState {
        None
    }

    fn step(&self, state: &RegisterState, input: &Request, output: Option<&Response>) -> Option<RegisterState> {
        match (input, output) {
            (Request::Range(r), None) => {
                debug_assert!(r.range_end.is_empty());
                Some(state.clone())
            }
            (Request::Range(r), Some(Response::Range { kvs, .. })) => {
                kvs_match(state, &r.key, kvs).then(|| state.clone())
            }
            (Request::Put(p), None) => Some(put(state, p, None).0),
            (Request::Put(p), Some(Response::Put { prev_kv, .. })) => {
                let (next, ok) = put(state, p, Some(prev_kv));
                ok.then_some(next)
            }
            (Request::Delete(d), output) => {
                let output = match output {
                    None => None,
                    Some(Response::Delete { deleted, prev_kvs, .. }) => Some((*deleted, prev_kvs.as_slice())),
                    Some(_) => return None,
                };
                delete(state, d, output).then_some(None)
            }
            (Request::Txn(t), output) => {
                let mut succeeded = true;
                for c in &t.compare {
                    let holds = match &c.target {
                        // etcd: a value compare on a missing key is false whatever the operator.
                        CompareTarget::Value(v) => {
                            state.as_ref().is_some_and(|s| compare_holds(c.result, s.value.cmp(v)))
                        }
                        // A missing key compares as version 0.
                        CompareTarget::Version(n) => {
                            compare_holds(c.result, state.as_ref().map_or(0, |s| s.version).cmp(n))
                        }
                        // Refused by supports(); no register state can judge it.
                        _ => return None,
                    };
                    succeeded &= holds;
                }
                let responses = match output {
                    None => None,
                    Some(Response::Txn { succeeded: seen, responses, .. }) => {
                        if *seen != succeeded {
                            return None;
                        }
                        Some(responses)
                    }
                    Some(_) => return None,
                };
                let branch = if succeeded { &t.success } else { &t.failure };
                if responses.is_some_and(|r| r.len() != branch.len()) {
                    return None;
                }
                // Requests of a txn see the effects of the ones before them.
                let mut state = state.clone();
                for (i, op) in branch.iter().enumerate() {
                    let response = responses.map(|r| &r[i]);
                    state = match (op, response) {
                        (TxnOp::Range(_), None) => state,
                        (TxnOp::Range(r), Some(TxnOpResponse::Range { kvs })) => {
                            if !kvs_match(&state, &r.key, kvs) {
                                return None;
                            }
                            state
                        }
                        (TxnOp::Put(p), None) => put(&state, p, None).0,
                        (TxnOp::Put(p), Some(TxnOpResponse::Put { prev_kv })) => {
                            let (next, ok) = put(&state, p, Some(prev_kv));
                            if !ok {
                                return None;
                            }
                            next
                        }
                        (TxnOp::Delete(d), None) => {
                            debug_assert!(delete(&state, d, None));
                            None
                        }
                        (TxnOp::Delete(d), Some(TxnOpResponse::Delete { deleted, prev_kvs })) => {
                            if !delete(&state, d, Some((*deleted, prev_kvs))) {
                                return None;
                            }
                            None
                        }
                        // A response of another type than its request: validation refuses such
                        // histories, and no model state explains one.
                        (_, Some(_)) => return None,
                    };
                }
                Some(state)
            }
            // An output of another type than the request, or a request supports() refuses.
            _ => None,
        }
    }

    fn partition(&self, input: &Request) -> Bytes {
        key_of(input).cloned().unwrap_or_default()
    }

    fn is_read_only(&self, input: &Request) -> bool {
        input.is_read_only()
    }

    fn describe_partition(&self, key: &Bytes) -> String {
        format!("key {key}")
    }

    fn describe_operation(&self, input: &Request, output: Option<&Response>) -> String {
        describe(input, output)
    }

    fn describe_state(&self, state: &RegisterState) -> String {
        match state {
            None => "absent".into(),
            Some(s) => format!("{} (version {})", s.value, s.version),
        }
    }
}

pub(crate) fn describe(input: &Request, output: Option<&Response>) -> String {
    let mut s = input.to_string();
    match output {
        None => s.push_str(" -> ? (indeterminate)"),
        Some(output) => {
            let _ = write!(s, " -> {output}");
        }
    }
    s
}

impl HistoryModel for RegisterModel {
    fn supports(&self, request: &Request) -> Result<(), String> {
        match request {
            Request::Range(r) => check_range(r),
            Request::Put(p) => super::check_put(p),
            Request::Delete(d) => check_delete(d),
            Request::Txn(t) => {
                let Some(key) = key_of(request) else {
                    return Err("a txn with no compare and no request names no register".into());
                };
                for c in &t.compare {
                    if c.key != *key || !c.range_end.is_empty() {
                        return Err("a txn over several keys spans registers".into());
                    }
                    if !matches!(c.target, CompareTarget::Value(_) | CompareTarget::Version(_)) {
                        return Err(format!(
                            "the register model compares value and version only, not {c} (revisions and leases are outside it)"
                        ));
                    }
                }
                for op in t.success.iter().chain(&t.failure) {
                    if txn_op_key(op) != key {
                        return Err("a txn over several keys spans registers".into());
                    }
                    match op {
                        TxnOp::Range(r) => check_range(r)?,
                        TxnOp::Put(p) => super::check_put(p)?,
                        TxnOp::Delete(d) => check_delete(d)?,
                    }
                }
                Ok(())
            }
            Request::LeaseGrant { .. } | Request::LeaseRevoke { .. } | Request::LeaseKeepalive { .. } => {
                Err(format!("{}: leases span keys: use the etcd model", request.type_name()))
            }
            Request::Compact { .. } => Err("compact: compaction needs revisions: use the etcd model".into()),
            Request::LeaseExpire { .. } => Err("lease_expire: leases need the etcd model".into()),
            Request::Watch(_) | Request::WatchResponse { .. } => {
                Err(format!("{}: watches are for the watch checks, not a model", request.type_name()))
            }
            Request::ListTxn { .. } => Err("list_txn: list-append transactions are for the transaction checks".into()),
        }
    }
}
