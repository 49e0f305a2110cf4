//! `txn`: multi-key transactions whose compares pin what the client last saw of a key (its
//! mod revision, or its value), with puts and ranges in both branches; plus plain puts and
//! ranges over all the keys, which keep the client's view fresh.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::Rng;

use super::{prefix_end, Client};
use crate::history::{
    Bytes, Compare, CompareResult, CompareTarget, KeyValue, PutRequest, RangeRequest, Request, Response, TxnOp,
    TxnOpResponse, TxnRequest,
};

/// Out of 100 requests: ranges over every key, then single puts; the rest are txns.
const RANGE_ALL_PERCENT: u32 = 20;
const PUT_PERCENT: u32 = 15;
/// Keys compared, and keys written, by one txn: 1 up to this.
const TXN_KEYS_MAX: usize = 3;

/// What the client last saw of each key: its mod revision and value (absent: not seen, or deleted).
type View = BTreeMap<Bytes, KeyValue>;

pub(crate) async fn run(client: &mut Client) {
    let mut view = View::new();
    let prefix = Bytes::from(client.spec.key_prefix.clone());
    while client.running() {
        let dice = client.rng.gen_range(0..100);
        let request = if dice < RANGE_ALL_PERCENT {
            Request::Range(RangeRequest {
                key: prefix.clone(),
                range_end: Bytes::from(prefix_end(prefix.as_slice())),
                revision: 0,
            })
        } else if dice < RANGE_ALL_PERCENT + PUT_PERCENT {
            let (key, value) = (client.random_key("t").into(), client.unique_value().into());
            Request::Put(PutRequest { key, value, lease: 0, prev_kv: false })
        } else {
            Request::Txn(make_txn(client, &view))
        };
        let Some(Ok(response)) = client.kv_recorded(request.clone()).await else { continue };
        learn(&mut view, &request, &response);
    }
}

fn make_txn(client: &mut Client, view: &View) -> TxnRequest {
    let mut keys: Vec<Bytes> = (0..client.spec.keys.max(1)).map(|i| client.key("t", i).into()).collect();
    keys.shuffle(&mut client.rng);
    let compared = client.rng.gen_range(1..=TXN_KEYS_MAX.min(keys.len()));
    let compare = keys[..compared]
        .iter()
        .map(|key| {
            let seen = view.get(key);
            // A value compare needs a value (a value compare on an absent key is always false).
            let target = match seen {
                Some(kv) if client.rng.gen_bool(0.3) => CompareTarget::Value(kv.value.clone()),
                Some(kv) => CompareTarget::ModRevision(kv.mod_revision),
                None => CompareTarget::CreateRevision(0),
            };
            Compare { key: key.clone(), range_end: Bytes::default(), result: CompareResult::Equal, target }
        })
        .collect();
    // Each branch writes to distinct keys (etcd refuses a txn that puts one key twice) and reads
    // the compared keys, so that the client learns their state either way.
    let mut branch = |client: &mut Client| {
        keys.shuffle(&mut client.rng);
        let writes = client.rng.gen_range(1..=TXN_KEYS_MAX.min(keys.len()));
        let mut ops: Vec<TxnOp> = keys[..writes]
            .iter()
            .cloned()
            .map(|key| TxnOp::Put(PutRequest { key, value: client.unique_value().into(), lease: 0, prev_kv: true }))
            .collect();
        ops.push(TxnOp::Range(RangeRequest { key: keys[0].clone(), range_end: Bytes::default(), revision: 0 }));
        ops
    };
    let success = branch(client);
    let failure = if client.rng.gen_bool(0.5) { branch(client) } else { vec![range_of(&keys[0])] };
    TxnRequest { compare, success, failure }
}

fn range_of(key: &Bytes) -> TxnOp {
    TxnOp::Range(RangeRequest { key: key.clone(), range_end: Bytes::default(), revision: 0 })
}

/// Updates the view from an answer: key-values read, and what the puts of a txn wrote.
fn learn(view: &mut View, request: &Request, response: &Response) {
    match (request, response) {
        (Request::Range(r), Response::Range { kvs, .. }) => {
            if !r.range_end.is_empty() {
                // A range over all the keys: those it did not return are absent.
                view.clear();
            }
            for kv in kvs {
                view.insert(kv.key.clone(), kv.clone());
            }
        }
        (Request::Put(p), Response::Put { header_revision, .. }) => {
            view.insert(p.key.clone(), written(p, *header_revision));
        }
        (Request::Txn(t), Response::Txn { header_revision, succeeded, responses }) => {
            let branch = if *succeeded { &t.success } else { &t.failure };
            for (op, answer) in branch.iter().zip(responses) {
                match (op, answer) {
                    (TxnOp::Put(p), _) => {
                        view.insert(p.key.clone(), written(p, *header_revision));
                    }
                    (TxnOp::Range(r), TxnOpResponse::Range { kvs }) => {
                        view.remove(&r.key);
                        for kv in kvs {
                            view.insert(kv.key.clone(), kv.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// What a put wrote, as far as the compares need it (mod revision and value).
fn written(p: &PutRequest, revision: i64) -> KeyValue {
    KeyValue {
        key: p.key.clone(),
        value: p.value.clone(),
        create_revision: 0,
        mod_revision: revision,
        version: 0,
        lease: 0,
    }
}
