//! `append`: list-append transactions (`list_txn`) for the Elle-style checks.
//!
//! Each key holds a list of numbers, stored as comma-separated decimals. A `list_txn` of 1 to
//! [`MICRO_OPS_MAX`] micro-operations runs as the history format describes:
//!
//! 1. read every key it touches in one read-only txn (one snapshot, linearizable);
//! 2. compute what its reads return and the new lists, its own appends visible to its later reads;
//! 3. one txn whose compares pin every key touched (`mod_revision` as read, `create_revision == 0`
//!    for a key that did not exist), and whose success branch puts the new lists.
//!
//! A compare failure (a concurrent append got in between) retries from 1, up to
//! [`ATTEMPTS_MAX`] attempts, and is then recorded `failed`: nothing of it was written. Any error
//! before the writing txn is sent is `failed` too; an indeterminate writing txn is
//! `indeterminate`. A read-only `list_txn` is answered by step 1 alone.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;

use super::{Client, Failure};
use crate::history::{
    Bytes, Compare, CompareResult, CompareTarget, ListOp, PutRequest, RangeRequest, Request, Response, TxnOp,
    TxnOpResponse, TxnRequest,
};

/// Micro-operations per `list_txn`: 1 up to this.
const MICRO_OPS_MAX: usize = 4;
/// Attempts of one `list_txn` whose compares keep failing.
const ATTEMPTS_MAX: usize = 3;

pub(crate) async fn run(client: &mut Client) {
    while client.running() {
        let n = client.rng.gen_range(1..=MICRO_OPS_MAX);
        let ops: Vec<ListOp> = (0..n)
            .map(|_| {
                let key = client.random_key("a").into();
                if client.rng.gen_bool(0.5) {
                    ListOp::Append { key, value: client.unique_number() }
                } else {
                    ListOp::Read { key }
                }
            })
            .collect();
        if client.conn().await.is_none() {
            break;
        }
        let call_ns = client.recorder.now_ns();
        let result = list_txn(client, &ops).await;
        client.record(call_ns, Request::ListTxn { ops }, result);
    }
}

/// A key as read: its list and mod revision (0: absent).
#[derive(Debug)]
struct Read {
    list: Vec<u64>,
    mod_revision: i64,
}

async fn list_txn(client: &mut Client, ops: &[ListOp]) -> Result<Response, Failure> {
    let keys: Vec<Bytes> = {
        let mut keys: Vec<Bytes> = ops.iter().map(|op| op.key().clone()).collect();
        keys.sort();
        keys.dedup();
        keys
    };
    let mut last_refusal = String::new();
    for attempt in 1..=ATTEMPTS_MAX {
        let snapshot = Request::Txn(TxnRequest {
            compare: Vec::new(),
            success: keys
                .iter()
                .map(|key| TxnOp::Range(RangeRequest { key: key.clone(), range_end: Bytes::default(), revision: 0 }))
                .collect(),
            failure: Vec::new(),
        });
        // Nothing is written before the second txn: any failure here leaves the lists untouched.
        let (read_revision, mut state) = match client.kv(&snapshot).await {
            Ok(Response::Txn { header_revision, responses, .. }) => {
                (header_revision, parse(&keys, &responses).map_err(Failure::Refused)?)
            }
            Ok(other) => return Err(Failure::Refused(format!("unexpected answer to the reads: {other}"))),
            Err(Failure::Refused(e) | Failure::Unknown(e)) => return Err(Failure::Refused(format!("reads: {e}"))),
        };
        let mut results = Vec::with_capacity(ops.len());
        let mut appended: BTreeSet<Bytes> = BTreeSet::new();
        for op in ops {
            let read = state.get_mut(op.key()).expect("every key was read");
            match op {
                ListOp::Append { key, value } => {
                    read.list.push(*value);
                    appended.insert(key.clone());
                    results.push(None);
                }
                ListOp::Read { .. } => results.push(Some(read.list.clone())),
            }
        }
        if appended.is_empty() {
            return Ok(Response::ListTxn { header_revision: read_revision, results });
        }
        let compare = state
            .iter()
            .map(|(key, read)| {
                let target = if read.mod_revision == 0 {
                    CompareTarget::CreateRevision(0)
                } else {
                    CompareTarget::ModRevision(read.mod_revision)
                };
                Compare { key: key.clone(), range_end: Bytes::default(), result: CompareResult::Equal, target }
            })
            .collect();
        let success = appended
            .iter()
            .map(|key| {
                let list = state[key].list.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
                TxnOp::Put(PutRequest { key: key.clone(), value: list.into(), lease: 0, prev_kv: false })
            })
            .collect();
        let write = Request::Txn(TxnRequest { compare, success, failure: Vec::new() });
        match client.kv(&write).await? {
            Response::Txn { header_revision, succeeded: true, .. } => {
                return Ok(Response::ListTxn { header_revision, results });
            }
            Response::Txn { succeeded: false, .. } => {
                last_refusal = format!("a key changed between the reads and the write, {attempt} times");
            }
            other => return Err(Failure::Unknown(format!("unexpected answer to the write: {other}"))),
        }
    }
    Err(Failure::Refused(last_refusal))
}

/// The lists read by the snapshot txn, one range response per key.
fn parse(keys: &[Bytes], responses: &[TxnOpResponse]) -> Result<BTreeMap<Bytes, Read>, String> {
    let mut state = BTreeMap::new();
    for (key, response) in keys.iter().zip(responses) {
        let TxnOpResponse::Range { kvs } = response else {
            return Err(format!("reading {key}: not a range response"));
        };
        let read = match kvs.first() {
            None => Read { list: Vec::new(), mod_revision: 0 },
            Some(kv) => {
                let text = std::str::from_utf8(kv.value.as_slice()).map_err(|_| format!("{key} holds non-UTF-8"))?;
                let list = text
                    .split(',')
                    .filter(|item| !item.is_empty())
                    .map(|item| item.parse::<u64>().map_err(|_| format!("{key} holds {text:?}, not a list of numbers")))
                    .collect::<Result<Vec<_>, String>>()?;
                Read { list, mod_revision: kv.mod_revision }
            }
        };
        state.insert(key.clone(), read);
    }
    if state.len() != keys.len() {
        return Err(format!("{} range responses for {} keys", responses.len(), keys.len()));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::KeyValue;

    fn holding(value: &str, mod_revision: i64) -> TxnOpResponse {
        let kv =
            KeyValue { key: "x".into(), value: value.into(), create_revision: 1, mod_revision, version: 1, lease: 0 };
        TxnOpResponse::Range { kvs: vec![kv] }
    }

    #[test]
    fn lists_are_comma_separated_and_absent_keys_empty() {
        let keys: Vec<Bytes> = vec!["x".into(), "y".into()];
        let state = parse(&keys, &[holding("3,1000000004", 7), TxnOpResponse::Range { kvs: vec![] }]).unwrap();
        assert_eq!(state[&keys[0]].list, vec![3, 1000000004]);
        assert_eq!(state[&keys[0]].mod_revision, 7);
        assert_eq!((state[&keys[1]].list.len(), state[&keys[1]].mod_revision), (0, 0));
        let garbage = parse(&keys[..1], &[holding("3,x", 7)]).unwrap_err();
        assert!(garbage.contains("not a list of numbers"), "{garbage}");
    }
}
