//! The checks etcd's RPC layer (`v3rpc/key.go`) makes before a request is proposed.
//!
//! They depend only on the request, not on the store, so a member can refuse a bad request
//! without a round through raft; the store repeats them when it applies, so that nothing that
//! reaches it unchecked can corrupt it. Errors and their precedence follow etcd exactly.

use std::collections::BTreeSet;

use bytes::Bytes;
use detcd_proto::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::Error;

pub fn check_range(r: &RangeRequest) -> Result<(), Error> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), Error> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), Error> {
    if r.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// A txn's shape (op counts, empty keys) and then etcd's duplicate-key rule on both branches.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Error> {
    check_txn_shape(r, max_txn_ops)?;
    // The overlap check comes after the shape check so that its cost is bounded by the op limit.
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

/// etcd's `checkTxnRequest`: at most `max_txn_ops` per level, counted as the largest of the
/// compare, success and failure lists; a nested txn gets what is left of the budget.
fn check_txn_shape(r: &TxnRequest, max_txn_ops: usize) -> Result<(), Error> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_txn_ops {
        return Err(Error::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_request_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_request_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), Error> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r),
        Some(request_op::Request::RequestTxn(r)) => check_txn_shape(r, max_txn_ops),
        // etcd answers an empty op with "key not found".
        None => Err(Error::KeyNotFound),
    }
}

/// Deleted key sets, as etcd's interval tree sees them.
#[derive(Default)]
struct Deletes {
    points: BTreeSet<Bytes>,
    spans: Vec<(Bytes, Bytes)>,
}

impl Deletes {
    fn insert(&mut self, key: &Bytes, range_end: &Bytes) {
        match &range_end[..] {
            [] => {
                self.points.insert(key.clone());
            }
            // etcd builds the interval [key, "\0"), which its tree never finds overlapping
            // anything; so a from-key delete does not take part in the duplicate check. We keep
            // that quirk: a txn etcd accepts must be accepted here too.
            [0] => {}
            _ if key >= range_end => {}
            _ => self.spans.push((key.clone(), range_end.clone())),
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        self.points.contains(key) || self.spans.iter().any(|(s, e)| &s[..] <= key && key < &e[..])
    }

    fn extend(&mut self, other: Deletes) {
        self.points.extend(other.points);
        self.spans.extend(other.spans);
    }
}

/// etcd's `checkIntervals`: no key may be put twice, or put and deleted, by the ops of one txn
/// branch and the nested txns under it. Two deletes may overlap. A key put in both the success
/// and the failure branch of one nested txn is fine: only one of them runs.
fn check_intervals(reqs: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Deletes), Error> {
    let mut dels = Deletes::default();
    for op in reqs {
        if let Some(request_op::Request::RequestDeleteRange(d)) = &op.request {
            dels.insert(&d.key, &d.range_end);
        }
    }
    let mut puts = BTreeSet::new();
    for op in reqs {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.contains(k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in puts_else {
            if (puts.contains(&k) && !puts_then.contains(&k)) || dels.contains(&k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in reqs {
        if let Some(request_op::Request::RequestPut(p)) = &op.request {
            if puts.contains(&p.key) || dels.contains(&p.key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(p.key.clone());
        }
    }
    Ok((puts, dels))
}
