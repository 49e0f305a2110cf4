//! The key space with etcd's global revision.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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
/// Not modelled yet (refused by [`HistoryModel::supports`]): leases (grant, revoke, keepalive,
/// puts with a lease), compaction, ranges at a past revision (they need the store's history). Not
/// checked: etcd's refusal of txns that write one key twice (such a txn fails, so it should not
/// appear as `ok`; the model applies its requests in order).
#[derive(Clone, Copy, Debug)]
pub struct EtcdModel {
    pub initial_revision: i64,
}

impl Default for EtcdModel {
    fn default() -> Self {
        EtcdModel { initial_revision: 1 }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyState {
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
}

/// The map is shared between the states of the search (most steps are reads, which change
/// nothing) and copied on write.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EtcdState {
    pub revision: i64,
    pub keys: Rc<BTreeMap<Bytes, KeyState>>,
}

fn key_value(key: &Bytes, state: &KeyState) -> KeyValue {
    KeyValue {
        key: key.clone(),
        value: state.value.clone(),
        create_revision: state.create_revision,
        mod_revision: state.mod_revision,
        version: state.version,
        lease: 0,
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
        // No key has a lease: puts with leases are refused.
        CompareTarget::Lease(n) => compare_holds(c.result, 0.cmp(n)),
    })
}

/// Applies requests to a copy-on-write key map at one pending revision.
struct Writer {
    keys: Rc<BTreeMap<Bytes, KeyState>>,
    /// The revision the writes get: the current one + 1.
    write_revision: i64,
    changed: bool,
}

impl Writer {
    fn range(&self, r: &RangeRequest) -> Vec<KeyValue> {
        debug_assert_eq!(r.revision, 0, "refused by supports()");
        select(&self.keys, &r.key, &r.range_end).into_iter().map(|(k, s)| key_value(k, s)).collect()
    }

    fn put(&mut self, p: &PutRequest) -> Option<KeyValue> {
        let keys = Rc::make_mut(&mut self.keys);
        let previous = keys.get(&p.key);
        let prev_kv = previous.map(|s| key_value(&p.key, s));
        let next = KeyState {
            value: p.value.clone(),
            create_revision: previous.map_or(self.write_revision, |s| s.create_revision),
            mod_revision: self.write_revision,
            version: previous.map_or(0, |s| s.version) + 1,
        };
        keys.insert(p.key.clone(), next);
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
            let removed = keys.remove(&kv.key);
            assert!(removed.is_some(), "a selected key exists");
        }
        self.changed = true;
        (doomed.len() as i64, if d.prev_kv { doomed } else { Vec::new() })
    }

    fn finish(self, revision: i64) -> EtcdState {
        let next = EtcdState { revision: if self.changed { self.write_revision } else { revision }, keys: self.keys };
        // Cheap on every step; the walk over all keys only in debug builds.
        assert!(!self.changed || Rc::strong_count(&next.keys) == 1, "a change copied the map");
        debug_assert!(next
            .keys
            .values()
            .all(|k| k.mod_revision <= next.revision && k.create_revision <= k.mod_revision));
        next
    }
}

impl EtcdModel {
    /// The response etcd gives to `input` in `state`, and the state after it.
    pub fn apply(&self, state: &EtcdState, input: &Request) -> Option<(EtcdState, Response)> {
        let mut w = Writer { keys: Rc::clone(&state.keys), write_revision: state.revision + 1, changed: false };
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
            // Refused by supports().
            _ => return None,
        };
        let next = w.finish(state.revision);
        assert!(next.revision == state.revision || next.revision == state.revision + 1);
        let response = with_header(body, next.revision);
        Some((next, response))
    }
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

fn with_header(mut response: Response, revision: i64) -> Response {
    match &mut response {
        Response::Range { header_revision, .. }
        | Response::Put { header_revision, .. }
        | Response::Delete { header_revision, .. }
        | Response::Txn { header_revision, .. } => *header_revision = revision,
        _ => unreachable!("apply() builds only range, put, delete and txn responses"),
    }
    response
}

impl Model for EtcdModel {
    type Input = Request;
    type Output = Response;
    type State = EtcdState;
    type PartitionKey = ();

    fn init(&self) -> EtcdState {
        EtcdState { revision: self.initial_revision, keys: Rc::new(BTreeMap::new()) }
    }

    fn step(&self, state: &EtcdState, input: &Request, output: Option<&Response>) -> Option<EtcdState> {
        let (next, expected) = self.apply(state, input)?;
        match output {
            Some(seen) if *seen != expected => None,
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
    fn cannot_follow(&self, state: &EtcdState, _input: &Request, output: &Response) -> bool {
        state.revision > output.header_revision() - i64::from(output_says_it_wrote(output))
    }

    fn is_read_only(&self, input: &Request) -> bool {
        input.is_read_only()
    }

    fn state_heap_bytes(&self, state: &EtcdState) -> usize {
        // A B-tree entry costs about its key, its value and 64 bytes of node and fields.
        state.keys.iter().map(|(k, v)| k.0.len() + v.value.0.len() + 64).sum()
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

fn check_range(r: &RangeRequest) -> Result<(), String> {
    if r.revision != 0 {
        return Err("a range at a past revision: the store's history is not modelled yet".into());
    }
    Ok(())
}

impl HistoryModel for EtcdModel {
    fn supports(&self, request: &Request) -> Result<(), String> {
        match request {
            Request::Range(r) => check_range(r),
            Request::Put(p) => super::check_put(p),
            Request::Delete(_) => Ok(()),
            Request::Txn(t) => {
                for op in t.success.iter().chain(&t.failure) {
                    match op {
                        TxnOp::Range(r) => check_range(r)?,
                        TxnOp::Put(p) => super::check_put(p)?,
                        TxnOp::Delete(_) => {}
                    }
                }
                Ok(())
            }
            Request::LeaseGrant { .. } | Request::LeaseRevoke { .. } | Request::LeaseKeepalive { .. } => {
                Err(format!("{}: leases are not modelled yet", request.type_name()))
            }
            Request::Compact { .. } => Err("compact: compaction is not modelled yet".into()),
            Request::Watch(_) | Request::WatchResponse { .. } => {
                Err(format!("{}: watches are for the watch checks, not a model", request.type_name()))
            }
            Request::ListTxn { .. } => Err("list_txn: list-append transactions are for the transaction checks".into()),
        }
    }
}
