//! Scenario tests of the MVCC store, one section per operation, each case etcd's documented
//! behaviour. The randomized comparison against a naive model lives in `mvcc_model.rs`.

use std::collections::BTreeSet;

use bytes::Bytes;
use detcd_engine::mvcc::{NoLeases, Store};
use detcd_engine::Error;
use detcd_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op::Response,
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use detcd_proto::mvccpb::{event::EventType, KeyValue};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put_req(k: &str, v: &str) -> PutRequest {
    PutRequest { key: b(k), value: b(v), ..Default::default() }
}

fn range_req(k: &str, end: &str) -> RangeRequest {
    RangeRequest { key: b(k), range_end: b(end), ..Default::default() }
}

fn del_req(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest { key: b(k), range_end: b(end), ..Default::default() }
}

/// Puts and returns the new revision.
fn put(s: &mut Store, k: &str, v: &str) -> i64 {
    s.put(&put_req(k, v), &NoLeases).unwrap().response.header.unwrap().revision
}

fn keys(s: &Store, req: RangeRequest) -> Vec<String> {
    s.range(&req).unwrap().kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect()
}

fn get(s: &Store, k: &str) -> Option<KeyValue> {
    s.range(&range_req(k, "")).unwrap().kvs.into_iter().next()
}

fn store_with(pairs: &[(&str, &str)]) -> Store {
    let mut s = Store::new();
    for (k, v) in pairs {
        put(&mut s, k, v);
    }
    s
}

// ---- range -------------------------------------------------------------------------------

#[test]
fn range_key_encodings() {
    let s = store_with(&[("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5")]);
    let cases: &[(&str, &str, &[&str])] = &[
        ("ab", "", &["ab"]),                         // single key
        ("zz", "", &[]),                             // missing single key
        ("ab", "b", &["ab", "abc"]),                 // [ab, b)
        ("ab", "ac", &["ab", "abc"]),                // prefix "ab"
        ("b", "\0", &["b", "c"]),                    // from key
        ("\0", "\0", &["a", "ab", "abc", "b", "c"]), // all keys
        ("c", "a", &[]),                             // inverted: empty
        ("b", "b", &[]),                             // empty interval
    ];
    for (k, end, want) in cases {
        assert_eq!(keys(&s, range_req(k, end)), *want, "range [{k:?}, {end:?})");
    }
}

#[test]
fn range_limit_more_and_count() {
    let s = store_with(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let cases = [(0, 4, false), (2, 2, true), (3, 3, true), (4, 4, false), (9, 4, false), (-1, 4, false)];
    for (limit, returned, more) in cases {
        let r = s.range(&RangeRequest { limit, ..range_req("a", "\0") }).unwrap();
        assert_eq!((r.kvs.len(), r.more, r.count), (returned, more, 4), "limit {limit}");
    }
}

#[test]
fn range_at_revisions() {
    let mut s = Store::new();
    assert_eq!(s.current_revision(), 1, "a fresh store is at revision 1");
    let r2 = put(&mut s, "k", "v1");
    let r3 = put(&mut s, "k", "v2");
    assert_eq!((r2, r3), (2, 3));
    let at = |rev| s.range(&RangeRequest { revision: rev, ..range_req("k", "") });
    assert_eq!(at(2).unwrap().kvs[0].value, b("v1"));
    assert_eq!(at(3).unwrap().kvs[0].value, b("v2"));
    assert_eq!(at(0).unwrap().kvs[0].value, b("v2"));
    assert_eq!(at(-5).unwrap().kvs[0].value, b("v2"), "revision < 0 reads the latest");
    assert!(at(1).unwrap().kvs.is_empty());
    assert_eq!(at(4), Err(Error::FutureRevision));
    assert_eq!(at(2).unwrap().header.unwrap().revision, 3, "the header carries the current revision");
}

#[test]
fn range_sorting() {
    let mut s = Store::new();
    put(&mut s, "a", "z"); // rev 2
    put(&mut s, "b", "y"); // rev 3
    put(&mut s, "c", "x"); // rev 4
    put(&mut s, "a", "w"); // rev 5: a has version 2
    let sorted = |order: SortOrder, target: SortTarget| {
        keys(&s, RangeRequest { sort_order: order as i32, sort_target: target as i32, ..range_req("a", "\0") })
    };
    use SortOrder::*;
    use SortTarget::*;
    let cases: &[(SortOrder, SortTarget, &[&str])] = &[
        (None, Key, &["a", "b", "c"]),
        (Ascend, Key, &["a", "b", "c"]),
        (Descend, Key, &["c", "b", "a"]),
        (Ascend, Value, &["a", "c", "b"]),
        (Descend, Value, &["b", "c", "a"]),
        (None, Value, &["a", "c", "b"]), // a target other than KEY sorts ascending by default
        (Ascend, Mod, &["b", "c", "a"]),
        (Descend, Mod, &["a", "c", "b"]),
        (Ascend, Create, &["a", "b", "c"]),
        (Descend, Create, &["c", "b", "a"]),
        (Descend, Version, &["a", "b", "c"]), // ties keep key order
        (Ascend, Version, &["b", "c", "a"]),
    ];
    for (order, target, want) in cases {
        assert_eq!(sorted(*order, *target), *want, "{order:?} by {target:?}");
    }
    // Sorting happens before the limit: the two highest mod revisions, not the first two keys.
    let r = s.range(&RangeRequest { sort_order: 2, sort_target: 3, limit: 2, ..range_req("a", "\0") }).unwrap();
    assert_eq!(r.kvs.iter().map(|kv| kv.mod_revision).collect::<Vec<_>>(), [5, 4]);
    assert!(r.more);
}

#[test]
fn range_keys_only_and_count_only() {
    let s = store_with(&[("a", "1"), ("b", "2")]);
    let r = s.range(&RangeRequest { keys_only: true, ..range_req("a", "\0") }).unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()) && r.kvs.len() == 2);
    assert_eq!(r.kvs[1].mod_revision, 3, "keys_only keeps the metadata");
    let r = s.range(&RangeRequest { count_only: true, limit: 1, ..range_req("a", "\0") }).unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 2, false));
}

#[test]
fn range_revision_filters() {
    let mut s = Store::new();
    for k in ["a", "b", "c", "d"] {
        put(&mut s, k, "v"); // a=2 b=3 c=4 d=5
    }
    put(&mut s, "a", "v2"); // a: create 2, mod 6
    let filter = |f: fn(&mut RangeRequest)| {
        let mut req = range_req("a", "\0");
        f(&mut req);
        let r = s.range(&req).unwrap();
        assert_eq!(r.count, 4, "count ignores the filters");
        r.kvs.iter().map(|kv| String::from_utf8(kv.key.to_vec()).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(filter(|r| r.min_mod_revision = 4), ["a", "c", "d"]);
    assert_eq!(filter(|r| r.max_mod_revision = 4), ["b", "c"]);
    assert_eq!(filter(|r| r.min_create_revision = 3), ["b", "c", "d"]);
    assert_eq!(filter(|r| r.max_create_revision = 3), ["a", "b"]);
    assert_eq!(
        filter(|r| {
            r.min_mod_revision = 3;
            r.max_mod_revision = 5;
            r.limit = 2;
        }),
        ["b", "c"]
    );
}

#[test]
fn range_without_a_key_is_refused() {
    assert_eq!(Store::new().range(&range_req("", "")), Err(Error::EmptyKey));
}

// ---- put ---------------------------------------------------------------------------------

#[test]
fn put_bookkeeping_of_revisions_and_versions() {
    let mut s = Store::new();
    put(&mut s, "k", "1");
    put(&mut s, "other", "x");
    put(&mut s, "k", "2");
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 4, 2));
    assert_eq!(kv.value, b("2"));
}

#[test]
fn put_prev_kv_only_when_asked() {
    let mut s = Store::new();
    put(&mut s, "k", "1");
    let without = s.put(&put_req("k", "2"), &NoLeases).unwrap();
    assert_eq!(without.response.prev_kv, None);
    let with = s.put(&PutRequest { prev_kv: true, ..put_req("k", "3") }, &NoLeases).unwrap();
    assert_eq!(with.response.prev_kv.unwrap().value, b("2"));
    let fresh = s.put(&PutRequest { prev_kv: true, ..put_req("new", "1") }, &NoLeases).unwrap();
    assert_eq!(fresh.response.prev_kv, None);
    // The event always carries the previous value, for watchers that ask for it.
    assert_eq!(without.events[0].prev_kv.as_ref().unwrap().value, b("1"));
    assert_eq!(without.events[0].r#type, EventType::Put as i32);
}

#[test]
fn put_with_leases() {
    let mut s = Store::new();
    let leases: BTreeSet<i64> = [7, 8].into_iter().collect();
    assert_eq!(s.put(&PutRequest { lease: 9, ..put_req("k", "v") }, &leases), Err(Error::LeaseNotFound));
    assert_eq!(s.current_revision(), 1, "a refused put writes nothing");
    s.put(&PutRequest { lease: 7, ..put_req("k", "v") }, &leases).unwrap();
    assert_eq!(get(&s, "k").unwrap().lease, 7);
    // ignore_lease keeps the lease; ignore_value keeps the value.
    s.put(&PutRequest { ignore_lease: true, ..put_req("k", "v2") }, &leases).unwrap();
    assert_eq!((get(&s, "k").unwrap().lease, get(&s, "k").unwrap().value), (7, b("v2")));
    s.put(&PutRequest { ignore_value: true, lease: 8, ..put_req("k", "") }, &leases).unwrap();
    assert_eq!((get(&s, "k").unwrap().lease, get(&s, "k").unwrap().value), (8, b("v2")));
    // A plain put detaches the lease.
    put(&mut s, "k", "v3");
    assert_eq!(get(&s, "k").unwrap().lease, 0);
}

#[test]
fn put_refusals() {
    let mut s = store_with(&[("k", "v")]);
    let cases = [
        (put_req("", "v"), Error::EmptyKey),
        (PutRequest { ignore_value: true, ..put_req("k", "v") }, Error::ValueProvided),
        (PutRequest { ignore_lease: true, lease: 5, ..put_req("k", "v") }, Error::LeaseProvided),
        (PutRequest { ignore_value: true, ..put_req("missing", "") }, Error::KeyNotFound),
        (PutRequest { ignore_lease: true, ..put_req("missing", "v") }, Error::KeyNotFound),
    ];
    for (req, want) in cases {
        assert_eq!(s.put(&req, &NoLeases).map(|_| ()), Err(want), "{req:?}");
    }
    assert_eq!(s.current_revision(), 2);
}

// ---- delete range ------------------------------------------------------------------------

#[test]
fn delete_single_range_and_prefix() {
    let cases: &[(&str, &str, i64, &[&str])] = &[
        ("b", "", 1, &["a", "ba", "bb", "c"]),
        ("x", "", 0, &["a", "b", "ba", "bb", "c"]),
        ("b", "c", 3, &["a", "c"]),
        ("ba", "bc", 2, &["a", "b", "c"]),
        ("b", "\0", 4, &["a"]),
        ("\0", "\0", 5, &[]),
    ];
    for (k, end, deleted, left) in cases {
        let mut s = store_with(&[("a", "1"), ("b", "2"), ("ba", "3"), ("bb", "4"), ("c", "5")]);
        let r = s.delete_range(&del_req(k, end)).unwrap();
        assert_eq!(r.response.deleted, *deleted, "delete [{k:?}, {end:?})");
        assert_eq!(keys(&s, range_req("\0", "\0")), *left);
        let bumped = if *deleted > 0 { 1 } else { 0 };
        assert_eq!(s.current_revision(), 6 + bumped, "one revision for the whole delete, none for no-op");
        assert_eq!(r.response.header.unwrap().revision, s.current_revision());
        assert_eq!(r.events.len() as i64, *deleted);
    }
}

#[test]
fn delete_tombstone_ends_the_generation() {
    let mut s = store_with(&[("k", "1"), ("k", "2")]);
    let r = s.delete_range(&DeleteRangeRequest { prev_kv: true, ..del_req("k", "") }).unwrap();
    assert_eq!(r.response.prev_kvs[0].value, b("2"));
    let ev = &r.events[0];
    assert_eq!(ev.r#type, EventType::Delete as i32);
    assert_eq!(ev.kv.as_ref().unwrap().mod_revision, 4);
    assert_eq!(get(&s, "k"), None);
    let old = s.range(&RangeRequest { revision: 3, ..range_req("k", "") }).unwrap();
    assert_eq!(old.kvs[0].value, b("2"), "history before the delete stays readable");
    put(&mut s, "k", "3");
    let kv = get(&s, "k").unwrap();
    assert_eq!((kv.create_revision, kv.version), (5, 1), "a new generation starts over");
    assert_eq!(s.delete_range(&del_req("", "")).map(|_| ()), Err(Error::EmptyKey));
}

// ---- txn ---------------------------------------------------------------------------------

fn cmp(key: &str, target: CompareTarget, result: CompareResult, value: TargetUnion) -> Compare {
    Compare {
        key: b(key),
        target: target as i32,
        result: result as i32,
        target_union: Some(value),
        range_end: Bytes::new(),
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(put_req(k, v))) }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestDeleteRange(del_req(k, end))) }
}

fn op_get(k: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestRange(range_req(k, ""))) }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp { request: Some(Request::RequestTxn(t)) }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest { compare, success, failure }
}

#[test]
fn txn_compares_every_target_and_result() {
    // k: value "m", create 2, mod 3, version 2, lease 0.
    let s = store_with(&[("k", "a"), ("k", "m")]);
    use CompareResult::*;
    use CompareTarget::*;
    let cases = [
        (Value, Equal, TargetUnion::Value(b("m")), true),
        (Value, Greater, TargetUnion::Value(b("a")), true),
        (Value, Less, TargetUnion::Value(b("a")), false),
        (Value, NotEqual, TargetUnion::Value(b("m")), false),
        (Create, Equal, TargetUnion::CreateRevision(2), true),
        (Create, Less, TargetUnion::CreateRevision(3), true),
        (Mod, Equal, TargetUnion::ModRevision(3), true),
        (Mod, Greater, TargetUnion::ModRevision(3), false),
        (Version, Equal, TargetUnion::Version(2), true),
        (Version, NotEqual, TargetUnion::Version(2), false),
        (Lease, Equal, TargetUnion::Lease(0), true),
        (Lease, Greater, TargetUnion::Lease(0), false),
    ];
    for (target, result, value, holds) in cases {
        let mut s = s.clone();
        let t = txn(vec![cmp("k", target, result, value.clone())], vec![], vec![]);
        assert_eq!(s.txn(&t, &NoLeases).unwrap().response.succeeded, holds, "{target:?} {result:?} {value:?}");
    }
}

#[test]
fn txn_compare_on_missing_keys_and_ranges() {
    let mut s = store_with(&[("a1", "x"), ("a2", "x"), ("a3", "y")]);
    let mut holds = |c: Compare| s.txn(&txn(vec![c], vec![], vec![]), &NoLeases).unwrap().response.succeeded;
    use CompareResult::*;
    use CompareTarget::*;
    // A missing key compares as a zero key-value, except for values: those always fail.
    assert!(holds(cmp("nope", Version, Equal, TargetUnion::Version(0))));
    assert!(holds(cmp("nope", Create, Equal, TargetUnion::CreateRevision(0))));
    assert!(!holds(cmp("nope", Value, Equal, TargetUnion::Value(Bytes::new()))));
    assert!(!holds(cmp("nope", Value, NotEqual, TargetUnion::Value(b("x")))));
    // With a range_end, every key in the range must satisfy the compare.
    let ranged =
        |end: &str, v: &str| Compare { range_end: b(end), ..cmp("a1", Value, Equal, TargetUnion::Value(b(v))) };
    assert!(holds(ranged("a3", "x")));
    assert!(!holds(ranged("a4", "x")));
    assert!(holds(Compare { range_end: b("b"), ..cmp("a", Version, Equal, TargetUnion::Version(1)) }));
}

#[test]
fn txn_branches_one_revision_and_own_writes() {
    let mut s = store_with(&[("k", "1")]);
    let t = txn(
        vec![cmp("k", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b("1")))],
        vec![op_put("a", "x"), op_get("a"), op_put("b", "y"), op_del("k", "")],
        vec![op_put("failed", "!")],
    );
    let applied = s.txn(&t, &NoLeases).unwrap();
    let r = &applied.response;
    assert!(r.succeeded);
    assert_eq!(r.header.as_ref().unwrap().revision, 3, "the whole txn is one revision");
    assert_eq!(s.current_revision(), 3);
    let Some(Response::ResponseRange(read)) = &r.responses[1].response else { panic!("range response") };
    assert_eq!(read.kvs[0].value, b("x"), "a txn reads its own earlier writes");
    assert_eq!(get(&s, "a").unwrap().mod_revision, 3);
    assert_eq!(get(&s, "b").unwrap().mod_revision, 3);
    assert_eq!(get(&s, "failed"), None);
    let kinds: Vec<_> = applied.events.iter().map(|e| (e.r#type, e.kv.as_ref().unwrap().key.clone())).collect();
    assert_eq!(kinds, [(0, b("a")), (0, b("b")), (1, b("k"))], "events in the order of the ops");

    // The failure branch.
    let t = txn(
        vec![cmp("k", CompareTarget::Version, CompareResult::Greater, TargetUnion::Version(0))],
        vec![op_put("s", "1")],
        vec![op_put("f", "1")],
    );
    let r = s.txn(&t, &NoLeases).unwrap().response;
    assert!(!r.succeeded && get(&s, "f").is_some() && get(&s, "s").is_none());

    // A txn that writes nothing creates no revision.
    let before = s.current_revision();
    let r = s.txn(&txn(vec![], vec![op_get("a")], vec![]), &NoLeases).unwrap().response;
    assert_eq!((s.current_revision(), r.header.unwrap().revision), (before, before));
}

#[test]
fn txn_nested_compares_see_the_store_before_the_txn() {
    let mut s = store_with(&[("k", "old")]);
    let inner = txn(
        vec![cmp("k", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b("old")))],
        vec![op_put("inner-saw-old", "1")],
        vec![op_put("inner-saw-new", "1")],
    );
    let outer = txn(vec![], vec![op_put("k", "new"), op_txn(inner)], vec![]);
    let r = s.txn(&outer, &NoLeases).unwrap().response;
    assert!(get(&s, "inner-saw-old").is_some(), "as in etcd, nested compares run before any op");
    let Some(Response::ResponseTxn(nested)) = &r.responses[1].response else { panic!("txn response") };
    assert!(nested.succeeded);
    assert_eq!(get(&s, "inner-saw-old").unwrap().mod_revision, get(&s, "k").unwrap().mod_revision);
}

#[test]
fn txn_op_limits() {
    let mut s = Store::new();
    let puts = |n: usize| (0..n).map(|i| op_put(&format!("k{i}"), "v")).collect::<Vec<_>>();
    assert!(s.txn(&txn(vec![], puts(128), vec![]), &NoLeases).is_ok());
    assert_eq!(s.txn(&txn(vec![], puts(129), vec![]), &NoLeases).map(|_| ()), Err(Error::TooManyOps));
    let compares =
        (0..129).map(|_| cmp("k0", CompareTarget::Version, CompareResult::Greater, TargetUnion::Version(0))).collect();
    assert_eq!(s.txn(&txn(compares, vec![], vec![]), &NoLeases).map(|_| ()), Err(Error::TooManyOps));
    // A nested txn gets what is left of the budget: 100 at the top leaves 28 below.
    let mut top = puts(99);
    top.push(op_txn(txn(vec![], (0..29).map(|i| op_get(&format!("n{i}"))).collect(), vec![])));
    assert_eq!(s.txn(&txn(vec![], top.clone(), vec![]), &NoLeases).map(|_| ()), Err(Error::TooManyOps));
    top[99] = op_txn(txn(vec![], (0..28).map(|i| op_get(&format!("n{i}"))).collect(), vec![]));
    assert!(s.txn(&txn(vec![], top, vec![]), &NoLeases).is_ok());
}

#[test]
fn txn_duplicate_key_rule() {
    let nested = |success, failure| op_txn(txn(vec![], success, failure));
    let cases: Vec<(&str, Vec<RequestOp>, bool)> = vec![
        ("two puts of one key", vec![op_put("a", "1"), op_put("a", "2")], false),
        ("put and delete of one key", vec![op_put("a", "1"), op_del("a", "")], false),
        ("put inside a deleted range", vec![op_del("a", "c"), op_put("b", "1")], false),
        ("put just outside a deleted range", vec![op_del("a", "c"), op_put("c", "1")], true),
        ("two overlapping deletes", vec![op_del("a", "c"), op_del("b", "")], true),
        ("nested put under an outer delete", vec![op_del("a", ""), nested(vec![op_put("a", "1")], vec![])], false),
        ("outer put over a nested delete", vec![nested(vec![op_del("a", "")], vec![]), op_put("a", "1")], false),
        ("one key in then and else", vec![nested(vec![op_put("a", "1")], vec![op_put("a", "2")])], true),
        (
            "then-put and another nested put",
            vec![nested(vec![op_put("a", "1")], vec![]), nested(vec![op_put("a", "2")], vec![])],
            false,
        ),
        // etcd's quirk, kept for compatibility: a from-key delete is not checked.
        ("put under a from-key delete", vec![op_del("a", "\0"), op_put("b", "1")], true),
    ];
    for (name, ops, ok) in cases {
        let mut s = Store::new();
        let got = s.txn(&txn(vec![], ops, vec![]), &NoLeases).map(|_| ());
        assert_eq!(got, if ok { Ok(()) } else { Err(Error::DuplicateKey) }, "{name}");
    }
}

#[test]
fn txn_fails_whole_or_applies_whole() {
    let mut s = store_with(&[("k", "v")]);
    let leases: BTreeSet<i64> = [1].into_iter().collect();
    let bad_lease = RequestOp { request: Some(Request::RequestPut(PutRequest { lease: 2, ..put_req("b", "1") })) };
    let t = txn(vec![], vec![op_put("a", "1"), bad_lease.clone()], vec![]);
    assert_eq!(s.txn(&t, &leases).map(|_| ()), Err(Error::LeaseNotFound));
    assert_eq!((s.current_revision(), get(&s, "a")), (2, None), "nothing of a failed txn is written");
    // The branch not taken is not checked.
    let t = txn(vec![], vec![op_put("a", "1")], vec![bad_lease]);
    assert!(s.txn(&t, &leases).is_ok());
    // A range at a future revision fails the txn.
    let future =
        RequestOp { request: Some(Request::RequestRange(RangeRequest { revision: 99, ..range_req("k", "") })) };
    assert_eq!(
        s.txn(&txn(vec![], vec![op_put("z", "1"), future], vec![]), &leases).map(|_| ()),
        Err(Error::FutureRevision)
    );
    // An empty op, and a compare without a key.
    let empty = RequestOp { request: None };
    assert_eq!(s.txn(&txn(vec![], vec![empty], vec![]), &leases).map(|_| ()), Err(Error::KeyNotFound));
    let keyless = cmp("", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(0));
    assert_eq!(s.txn(&txn(vec![keyless], vec![], vec![]), &leases).map(|_| ()), Err(Error::EmptyKey));
    assert_eq!(s.current_revision(), 3);
}

#[test]
fn txn_that_fails_midway_is_undone() {
    // A from-key delete escapes etcd's duplicate check, then a put that keeps the value of the
    // key it just deleted cannot proceed. etcd panics here; we undo the txn and refuse it.
    let mut s = store_with(&[("a", "1"), ("b", "2")]);
    let keep_value =
        RequestOp { request: Some(Request::RequestPut(PutRequest { ignore_value: true, ..put_req("b", "") })) };
    let t = txn(vec![], vec![op_put("new", "x"), op_del("a", "\0"), keep_value], vec![]);
    let hash = s.hash_kv(0).unwrap();
    assert_eq!(s.txn(&t, &NoLeases).map(|_| ()), Err(Error::KeyNotFound));
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.hash_kv(0).unwrap(), hash, "nothing of the txn remains");
    assert_eq!(s.history(b"new"), None);
    assert_eq!(keys(&s, range_req("\0", "\0")), ["a", "b"]);
    // The store keeps working at the next revision.
    assert_eq!(put(&mut s, "c", "3"), 4);
}

// ---- compact -----------------------------------------------------------------------------

#[test]
fn compaction() {
    let mut s = Store::new();
    put(&mut s, "a", "1"); // 2
    put(&mut s, "a", "2"); // 3
    put(&mut s, "gone", "x"); // 4
    s.delete_range(&del_req("gone", "")).unwrap(); // 5
    put(&mut s, "a", "3"); // 6
    let compact = |s: &mut Store, revision| s.compact(&CompactionRequest { revision, physical: false }).map(|_| ());
    assert_eq!(compact(&mut s, 7), Err(Error::FutureRevision));
    compact(&mut s, 5).unwrap();
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(compact(&mut s, 5), Err(Error::Compacted));
    assert_eq!(compact(&mut s, 4), Err(Error::Compacted));
    let at = |s: &Store, revision| s.range(&RangeRequest { revision, ..range_req("\0", "\0") });
    assert_eq!(at(&s, 4), Err(Error::Compacted));
    let at5 = at(&s, 5).unwrap();
    assert_eq!(at5.kvs.len(), 1, "the compaction revision itself stays readable");
    assert_eq!(at5.kvs[0].value, b("2"), "the newest version at the compaction is kept");
    assert_eq!(
        s.history(b"gone").map(|h| h.versions().iter().map(|v| v.version).collect::<Vec<_>>()),
        Some(vec![0]),
        "a tombstone at the compaction revision is kept (a watch from 5 sees the delete, etcd #18089)"
    );
    assert_eq!(s.history(b"a").unwrap().versions().len(), 2);
    assert_eq!(at(&s, 0).unwrap().kvs[0].value, b("3"));
    let ranged = RequestOp { request: Some(Request::RequestRange(RangeRequest { revision: 3, ..range_req("a", "") })) };
    assert_eq!(s.txn(&txn(vec![], vec![ranged], vec![]), &NoLeases).map(|_| ()), Err(Error::Compacted));
    put(&mut s, "x", "y"); // 7
    compact(&mut s, 6).unwrap();
    assert_eq!(s.history(b"gone"), None, "a key deleted before the compaction is dropped");
}

// ---- hash --------------------------------------------------------------------------------

#[test]
fn hash_of_the_history() {
    let a = store_with(&[("x", "1"), ("y", "2")]);
    let mut b2 = store_with(&[("x", "1"), ("y", "2")]);
    let c = store_with(&[("x", "1"), ("y", "3")]);
    assert_eq!(a.hash_kv(0), b2.hash_kv(0));
    assert_ne!(a.hash_kv(0).unwrap().hash, c.hash_kv(0).unwrap().hash);
    let before = b2.hash_kv(3).unwrap();
    put(&mut b2, "z", "later");
    assert_eq!(b2.hash_kv(3).unwrap(), before, "writes after a revision do not change its hash");
    assert_ne!(b2.hash_kv(0).unwrap().hash, before.hash);
    assert_eq!(b2.hash_kv(9), Err(Error::FutureRevision));
    b2.compact(&CompactionRequest { revision: 3, physical: false }).unwrap();
    assert_eq!(b2.hash_kv(2), Err(Error::Compacted));
    assert_eq!(b2.hash_kv(0).unwrap().compact_revision, 3);
}
