//! The Rust `etcd-client` crate (its own tonic and generated stubs) against real detcd processes:
//! the ground the etcdctl scenarios cover, plus a thousand watchers on one watch stream and a
//! lease keepalive stream. Errors are checked word for word against etcd's, with their gRPC codes.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::grpc_error;
use detcd_tests::Cluster;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, GetResponse, LeaseGrantOptions,
    LeaseTimeToLiveOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
    WatchResponseStream,
};

/// How long any single answer may take before the test calls it lost.
const ANSWER: Duration = Duration::from_secs(10);

async fn connect(endpoint: &str) -> Client {
    common::connect(endpoint, ANSWER, ANSWER).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// (key, value) of every key-value in a range answer.
fn pairs(resp: &GetResponse) -> Vec<(String, String)> {
    resp.kvs().iter().map(|kv| (text(kv.key()), text(kv.value()))).collect()
}

fn keys(resp: &GetResponse) -> Vec<String> {
    resp.kvs().iter().map(|kv| text(kv.key())).collect()
}

fn owned(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The revision in a response header.
fn rev(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.expect("a response header").revision()
}

/// The next answer on a watch stream, within [`ANSWER`].
async fn next_watch(stream: &mut WatchResponseStream) -> WatchResponse {
    tokio::time::timeout(ANSWER, stream.message())
        .await
        .expect("no watch answer within 10 s")
        .expect("watch stream failed")
        .expect("watch stream ended")
}

/// One watch event as compared: type, key, value, mod revision, and the previous value if sent.
type Seen = (EventType, String, String, i64, Option<String>);

fn seen(resp: &WatchResponse) -> Vec<Seen> {
    resp.events()
        .iter()
        .map(|e| {
            let kv = e.kv().expect("an event carries its key-value");
            (e.event_type(), text(kv.key()), text(kv.value()), kv.mod_revision(), e.prev_kv().map(|p| text(p.value())))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_client_kv_against_one_member() {
    let c = Cluster::start(1, "rs-kv");
    let mut client = connect(&c.members[0].endpoint()).await;

    // Put and get, with the key's revisions and version.
    let put = client.put("foo", "bar", None).await.expect("put foo");
    let r_foo = rev(put.header());
    let got = client.get("foo", None).await.expect("get foo");
    assert_eq!(pairs(&got), owned(&[("foo", "bar")]));
    let kv = &got.kvs()[0];
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version(), kv.lease()), (r_foo, r_foo, 1, 0));
    assert_eq!(got.count(), 1);
    assert!(!got.more());
    assert_eq!(rev(got.header()), r_foo, "a read reports the store's revision");
    let put = client.put("foo", "bar2", Some(PutOptions::new().with_prev_key())).await.expect("put foo again");
    assert_eq!(rev(put.header()), r_foo + 1, "each put is one revision");
    let prev = put.prev_key().expect("put with prev_kv returns the previous key-value");
    assert_eq!((text(prev.value()), prev.mod_revision(), prev.version()), ("bar".into(), r_foo, 1));
    let got = client.get("foo", None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(
        (text(kv.value()), kv.create_revision(), kv.mod_revision(), kv.version()),
        ("bar2".into(), r_foo, r_foo + 1, 2)
    );
    // At the first put's revision, the first value.
    let old = client.get("foo", Some(GetOptions::new().with_revision(r_foo))).await.expect("get at a revision");
    assert_eq!(pairs(&old), owned(&[("foo", "bar")]));

    // Ranges: prefix, [a, c), from-key, limit with more and count, sort, keys-only, count-only.
    client.put("foo2", "baz", None).await.unwrap();
    for (k, v) in [("a1", "3"), ("a2", "1"), ("b1", "2"), ("c1", "0")] {
        client.put(k, v, None).await.unwrap();
    }
    let prefix = client.get("foo", Some(GetOptions::new().with_prefix())).await.unwrap();
    assert_eq!(pairs(&prefix), owned(&[("foo", "bar2"), ("foo2", "baz")]));
    let range = client.get("a", Some(GetOptions::new().with_range("c"))).await.unwrap();
    assert_eq!(pairs(&range), owned(&[("a1", "3"), ("a2", "1"), ("b1", "2")]));
    let from = client.get("b", Some(GetOptions::new().with_from_key())).await.unwrap();
    assert_eq!(keys(&from), ["b1", "c1", "foo", "foo2"]);
    let limited = client.get("a", Some(GetOptions::new().with_range("z").with_limit(2))).await.unwrap();
    assert_eq!(keys(&limited), ["a1", "a2"]);
    assert!(limited.more(), "a limited range that left keys out says so");
    assert_eq!(limited.count(), 6, "count is of the whole range, not the limited answer");
    let exact = client.get("a", Some(GetOptions::new().with_range("b").with_limit(2))).await.unwrap();
    assert_eq!((keys(&exact).len(), exact.more(), exact.count()), (2, false, 2), "a limit equal to the range");
    let by_value = client
        .get("a", Some(GetOptions::new().with_range("c").with_sort(SortTarget::Value, SortOrder::Descend)))
        .await
        .unwrap();
    assert_eq!(pairs(&by_value), owned(&[("a1", "3"), ("b1", "2"), ("a2", "1")]));
    let by_key_desc =
        client.get("a", Some(GetOptions::new().with_from_key().with_sort(SortTarget::Key, SortOrder::Descend))).await;
    assert_eq!(keys(&by_key_desc.unwrap()), ["foo2", "foo", "c1", "b1", "a2", "a1"]);
    let by_mod = client
        .get("a", Some(GetOptions::new().with_range("d").with_sort(SortTarget::Mod, SortOrder::Descend).with_limit(1)))
        .await
        .unwrap();
    assert_eq!(keys(&by_mod), ["c1"], "the last written key of [a, d)");
    let keys_only = client.get("a", Some(GetOptions::new().with_prefix().with_keys_only())).await.unwrap();
    assert_eq!(pairs(&keys_only), owned(&[("a1", ""), ("a2", "")]), "keys-only answers carry no values");
    let count_only = client.get("a", Some(GetOptions::new().with_range("c").with_count_only())).await.unwrap();
    assert!(count_only.kvs().is_empty(), "count-only answers carry no key-values: {count_only:?}");
    assert_eq!(count_only.count(), 3);
    let missing = client.get("nope", None).await.unwrap();
    assert_eq!((missing.kvs().len(), missing.count()), (0, 0));

    // Delete a range with the previous key-values.
    let before = rev(client.get("a1", None).await.unwrap().header());
    let del = client.delete("a", Some(DeleteOptions::new().with_range("b").with_prev_key())).await.expect("delete");
    assert_eq!(del.deleted(), 2);
    assert_eq!(rev(del.header()), before + 1, "one delete of two keys is one revision");
    let prev: Vec<(String, String)> = del.prev_kvs().iter().map(|kv| (text(kv.key()), text(kv.value()))).collect();
    assert_eq!(prev, owned(&[("a1", "3"), ("a2", "1")]));
    assert_eq!(client.get("a", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 0);
    let none = client.delete("a", Some(DeleteOptions::new().with_prefix())).await.unwrap();
    assert_eq!(none.deleted(), 0);
    assert_eq!(rev(none.header()), before + 1, "deleting nothing does not move the revision");

    // Txn: value, version, mod and create revision compares, both branches, a nested txn.
    let foo = client.get("foo", None).await.unwrap();
    let (foo_create, foo_mod) = (foo.kvs()[0].create_revision(), foo.kvs()[0].mod_revision());
    let head = rev(foo.header());
    let txn = Txn::new()
        .when([
            Compare::value("foo", CompareOp::Equal, "bar2"),
            Compare::version("foo", CompareOp::Equal, 2),
            Compare::mod_revision("foo", CompareOp::Equal, foo_mod),
            Compare::create_revision("foo", CompareOp::Less, foo_create + 1),
            Compare::version("absent", CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put("foo", "txn", None), TxnOp::get("foo", None), TxnOp::delete("b1", None)])
        .or_else([TxnOp::put("foo", "failed", None)]);
    let done = client.txn(txn).await.expect("txn");
    assert!(done.succeeded(), "every compare holds: {done:?}");
    assert_eq!(rev(done.header()), head + 1, "a txn is one revision");
    let ops = done.op_responses();
    assert_eq!(ops.len(), 3, "{ops:?}");
    assert!(matches!(&ops[0], TxnOpResponse::Put(p) if rev(p.header()) == head + 1), "{ops:?}");
    match &ops[1] {
        TxnOpResponse::Get(g) => assert_eq!(pairs(g), owned(&[("foo", "txn")]), "a txn's get sees its earlier put"),
        other => panic!("the second answer is a get's: {other:?}"),
    }
    assert!(matches!(&ops[2], TxnOpResponse::Delete(d) if d.deleted() == 1), "{ops:?}");
    let foo_mod = head + 1;
    assert_eq!(client.get("foo", None).await.unwrap().kvs()[0].mod_revision(), foo_mod);

    // The failure branch: one false compare is enough; it runs a nested txn.
    let nested = Txn::new()
        .when([Compare::version("foo", CompareOp::Greater, 2)])
        .and_then([TxnOp::put("nested", "yes", None)])
        .or_else([TxnOp::put("nested", "no", None)]);
    let txn = Txn::new()
        .when([
            Compare::value("foo", CompareOp::Equal, "txn"),
            Compare::mod_revision("foo", CompareOp::Greater, foo_mod),
        ])
        .and_then([TxnOp::put("foo", "unexpected", None)])
        .or_else([TxnOp::get("foo", None), TxnOp::txn(nested)]);
    let done = client.txn(txn).await.expect("txn with a nested txn");
    assert!(!done.succeeded(), "mod_revision > {foo_mod} is false: {done:?}");
    assert_eq!(rev(done.header()), foo_mod + 1, "the nested put is the failure branch's one revision");
    let ops = done.op_responses();
    match (&ops[0], &ops[1]) {
        (TxnOpResponse::Get(g), TxnOpResponse::Txn(inner)) => {
            assert_eq!(pairs(g), owned(&[("foo", "txn")]));
            assert!(inner.succeeded(), "foo's version is 3: {inner:?}");
            assert!(matches!(inner.op_responses().as_slice(), [TxnOpResponse::Put(_)]), "{inner:?}");
        }
        other => panic!("a get's then a txn's answer: {other:?}"),
    }
    assert_eq!(pairs(&client.get("nested", None).await.unwrap()), owned(&[("nested", "yes")]));
    assert_eq!(
        pairs(&client.get("foo", None).await.unwrap()),
        owned(&[("foo", "txn")]),
        "the failed txn wrote nothing"
    );
    // A read-only txn does not move the revision.
    let ro = client.txn(Txn::new().and_then([TxnOp::get("foo", None)])).await.unwrap();
    assert!(ro.succeeded(), "no compares means success");
    assert_eq!(rev(ro.header()), foo_mod + 1);

    // Compaction, then reads below, at and above it.
    let head = rev(client.put("after-txn", "1", None).await.unwrap().header());
    let at = head - 1;
    client.compact(at, None).await.expect("compact");
    assert_eq!(
        grpc_error(client.get("foo", Some(GetOptions::new().with_revision(r_foo))).await),
        ("OutOfRange".into(), "etcdserver: mvcc: required revision has been compacted".into()),
        "get foo at revision {r_foo}, compacted at {at}"
    );
    let at_compaction = client.get("nested", Some(GetOptions::new().with_revision(at))).await;
    assert_eq!(pairs(&at_compaction.expect("the compacted revision itself is readable")), owned(&[("nested", "yes")]));
    assert_eq!(
        grpc_error(client.get("foo", Some(GetOptions::new().with_revision(head + 1000))).await),
        ("OutOfRange".into(), "etcdserver: mvcc: required revision is a future revision".into()),
        "get foo at revision {}, head {head}",
        head + 1000
    );
    assert_eq!(
        grpc_error(client.compact(at, None).await),
        ("OutOfRange".into(), "etcdserver: mvcc: required revision has been compacted".into()),
        "compact twice at {at}"
    );
    assert_eq!(
        grpc_error(client.compact(head + 1000, None).await),
        ("OutOfRange".into(), "etcdserver: mvcc: required revision is a future revision".into()),
        "compact at {}",
        head + 1000
    );

    // Bad requests: etcd's errors.
    assert_eq!(
        grpc_error(client.put("", "v", None).await),
        ("InvalidArgument".into(), "etcdserver: key is not provided".into()),
        "put with an empty key"
    );
    assert_eq!(
        grpc_error(client.get("", None).await),
        ("InvalidArgument".into(), "etcdserver: key is not provided".into()),
        "get with an empty key"
    );
    // Over etcd's 1.5 MiB request limit, under its 2 MiB gRPC receive limit (the client's own
    // send limit is unbounded).
    let big = vec![b'x'; 1_600_000];
    assert_eq!(
        grpc_error(client.put("big", big, None).await),
        ("InvalidArgument".into(), "etcdserver: request is too large".into()),
        "put of a 1,600,000-byte value"
    );
    assert_eq!(client.get("big", None).await.unwrap().count(), 0, "the refused put wrote nothing");
    assert_eq!(
        grpc_error(client.put("k", "v", Some(PutOptions::new().with_lease(1234))).await),
        ("NotFound".into(), "etcdserver: requested lease not found".into()),
        "put with lease 1234, never granted"
    );
    assert_eq!(client.get("k", None).await.unwrap().count(), 0);
}

/// One watch stream carries 1,000 watchers on distinct keys; writes to a sample of them (single
/// puts, multi-key txns, deletes) reach each watcher exactly once, in order, under its watch id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_watchers_on_one_stream() {
    const WATCHERS: usize = 1000;
    let c = Cluster::start(1, "rs-watch1000");
    let mut client = connect(&c.members[0].endpoint()).await;
    let key = |i: usize| format!("w/{i:04}");

    let (mut requests, mut responses) = client.watch(key(0), None).await.expect("open a watch stream").split();
    let creates = tokio::spawn(async move {
        for i in 1..WATCHERS {
            requests.watch(key(i), None).await.expect("send a create request");
        }
        requests
    });
    // Creates are answered in order: the i-th created answer is key(i)'s watcher.
    let mut ids = Vec::with_capacity(WATCHERS);
    let started = Instant::now();
    while ids.len() < WATCHERS {
        let r = next_watch(&mut responses).await;
        assert!(r.created() && !r.canceled() && r.events().is_empty(), "answer {} to a create: {r:?}", ids.len());
        ids.push(r.watch_id());
    }
    let created_in = started.elapsed();
    // Keep the request side open: closing it ends the stream.
    let _requests = creates.await.expect("create requests sent");
    let index: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    assert_eq!(index.len(), WATCHERS, "watch ids are distinct on one stream: {ids:?}");

    // The writes, and what each watcher must see: (type, key, value, mod revision).
    let sample: Vec<usize> = (0..WATCHERS).step_by(7).chain([WATCHERS - 1]).collect();
    let fence = 1; // not in the sample; written last
    let fence_id = ids[fence];
    let mut expected: Vec<Vec<Seen>> = vec![Vec::new(); WATCHERS];
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let r = next_watch(&mut responses).await;
            let last = r.watch_id() == fence_id;
            got.push(r);
            if last {
                break;
            }
        }
        // Anything more (a duplicate, a stray) arrives shortly.
        while let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_millis(300), responses.message()).await {
            got.push(r);
        }
        got
    });
    for &i in &sample {
        let r = rev(client.put(key(i), "v0", None).await.expect("put").header());
        expected[i].push((EventType::Put, key(i), "v0".into(), r, None));
    }
    for chunk in sample.chunks(10) {
        let ops: Vec<TxnOp> = chunk.iter().map(|&i| TxnOp::put(key(i), format!("t{i}"), None)).collect();
        let r = rev(client.txn(Txn::new().and_then(ops)).await.expect("txn").header());
        for &i in chunk {
            expected[i].push((EventType::Put, key(i), format!("t{i}"), r, None));
        }
    }
    for (n, &i) in sample.iter().enumerate() {
        if n % 2 == 0 {
            let r = rev(client.delete(key(i), None).await.expect("delete").header());
            expected[i].push((EventType::Delete, key(i), String::new(), r, None));
        } else {
            let r = rev(client.put(key(i), "v2", None).await.expect("put").header());
            expected[i].push((EventType::Put, key(i), "v2".into(), r, None));
        }
    }
    let r = rev(client.put(key(fence), "fence", None).await.unwrap().header());
    expected[fence].push((EventType::Put, key(fence), "fence".into(), r, None));

    let got = reader.await.expect("the reader");
    let mut per_watcher: Vec<Vec<Seen>> = vec![Vec::new(); WATCHERS];
    for r in &got {
        assert!(!r.created() && !r.canceled(), "only events after the creates: {r:?}");
        assert!(!r.events().is_empty(), "an answer without events: {r:?}");
        let i = *index.get(&r.watch_id()).unwrap_or_else(|| panic!("events under an unknown watch id: {r:?}"));
        for e in seen(r) {
            assert!(rev(r.header()) >= e.3, "header revision below its event's: {r:?}");
            per_watcher[i].push(e);
        }
    }
    for i in 0..WATCHERS {
        assert_eq!(per_watcher[i], expected[i], "events of watcher {} (watch id {}) on {}", i, ids[i], key(i));
    }
    let events: usize = expected.iter().map(Vec::len).sum();
    assert_eq!(events, 3 * sample.len() + 1);
    eprintln!("1000 watchers created in {created_in:?}; {events} events in {} answers", got.len());
}

/// A client that does not read its watch stream while the writes come: every watcher on it
/// still gets every event, in order, exactly once, and in far fewer answers than events — the
/// member puts a waiting watcher's later events into its answer not yet sent (or, once the
/// stream is full, catches the watcher up from the store in batches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_stream_read_late_gets_every_event_once_in_order_in_fewer_answers() {
    const WATCHERS: usize = 50;
    const WRITES: usize = 200;
    let c = Cluster::start(1, "rs-watch-late");
    let mut client = connect(&c.members[0].endpoint()).await;
    let (mut requests, mut responses) = client.watch("late", None).await.expect("open a watch stream").split();
    for _ in 1..WATCHERS {
        requests.watch("late", None).await.expect("send a create request");
    }
    let mut ids = Vec::with_capacity(WATCHERS);
    while ids.len() < WATCHERS {
        let r = next_watch(&mut responses).await;
        assert!(r.created() && !r.canceled(), "answer to a create: {r:?}");
        ids.push(r.watch_id());
    }

    // 1 KiB values: 50 watchers x 200 writes is 10 MB of events, far beyond what the
    // transport buffers while nobody reads, so the member has to hold events back.
    let mut expected: Vec<(String, i64)> = Vec::with_capacity(WRITES);
    for n in 0..WRITES {
        let value = format!("{n:06}{}", "x".repeat(1024));
        let r = rev(client.put("late", value.clone(), None).await.expect("put").header());
        expected.push((value, r));
    }

    let mut per_watcher: HashMap<i64, Vec<(String, i64)>> = HashMap::new();
    let mut answers = 0;
    let mut last_header = 0;
    let complete = |per: &HashMap<i64, Vec<(String, i64)>>| {
        ids.iter().all(|id| per.get(id).is_some_and(|events| events.len() >= WRITES))
    };
    while !complete(&per_watcher) {
        let r = next_watch(&mut responses).await;
        answers += 1;
        assert!(!r.created() && !r.canceled() && !r.events().is_empty(), "only events: {r:?}");
        assert!(rev(r.header()) >= last_header, "header revisions never go back on a stream");
        last_header = rev(r.header());
        assert!(ids.contains(&r.watch_id()), "events under an unknown watch id: {r:?}");
        let events = per_watcher.entry(r.watch_id()).or_default();
        for e in r.events() {
            let kv = e.kv().expect("an event's key-value");
            assert_eq!(e.event_type(), EventType::Put);
            events.push((text(kv.value()), kv.mod_revision()));
        }
    }
    // Anything more (a duplicate, a stray) arrives shortly.
    if let Ok(Ok(Some(r))) = tokio::time::timeout(Duration::from_millis(300), responses.message()).await {
        panic!("an answer after every event was delivered: {r:?}");
    }
    for id in &ids {
        assert!(per_watcher[id] == expected, "watch id {id}: every event, in order, once");
    }
    assert!(
        answers * 2 < WATCHERS * WRITES,
        "{answers} answers for {} events: a late reader gets them gathered",
        WATCHERS * WRITES
    );
    drop(requests);
    eprintln!("{} events in {answers} answers", WATCHERS * WRITES);
}

/// A watch from a past revision replays history with previous key-values, then live events; a
/// cancelled watcher goes quiet; a watch below the compaction is cancelled with its revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_history_with_prev_kv_and_cancels() {
    let c = Cluster::start(1, "rs-watch");
    let mut client = connect(&c.members[0].endpoint()).await;
    let r1 = rev(client.put("k", "v1", None).await.unwrap().header());
    let r2 = rev(client.put("k", "v2", None).await.unwrap().header());
    let r3 = rev(client.delete("k", None).await.unwrap().header());
    client.put("other", "x", None).await.unwrap();

    let options = WatchOptions::new().with_start_revision(r1).with_prev_key();
    let (mut requests, mut responses) = client.watch("k", Some(options)).await.expect("watch k").split();
    let created = next_watch(&mut responses).await;
    assert!(created.created() && created.events().is_empty(), "{created:?}");
    let id = created.watch_id();
    let mut history = Vec::new();
    while history.len() < 3 {
        let r = next_watch(&mut responses).await;
        assert_eq!(r.watch_id(), id, "{r:?}");
        history.extend(seen(&r));
    }
    assert_eq!(
        history,
        [
            (EventType::Put, "k".into(), "v1".into(), r1, None),
            (EventType::Put, "k".into(), "v2".into(), r2, Some("v1".into())),
            (EventType::Delete, "k".into(), String::new(), r3, Some("v2".into())),
        ],
        "the history of k from revision {r1}, with previous values"
    );
    // Live, after the history: k was deleted, so no previous value.
    let r4 = rev(client.put("k", "v3", None).await.unwrap().header());
    let live = next_watch(&mut responses).await;
    assert_eq!((live.watch_id(), seen(&live)), (id, vec![(EventType::Put, "k".into(), "v3".into(), r4, None)]));
    let kv = live.events()[0].kv().unwrap();
    assert_eq!((kv.create_revision(), kv.version()), (r4, 1), "a re-created key starts over");

    // A second watcher on the same stream, then cancel the first.
    requests.watch("fence", None).await.unwrap();
    let created = next_watch(&mut responses).await;
    assert!(created.created() && created.watch_id() != id, "{created:?}");
    let fence = created.watch_id();
    requests.cancel(id).await.unwrap();
    let cancelled = next_watch(&mut responses).await;
    assert!(cancelled.canceled() && cancelled.watch_id() == id && cancelled.events().is_empty(), "{cancelled:?}");
    client.put("k", "v4", None).await.unwrap();
    let r5 = rev(client.put("fence", "f", None).await.unwrap().header());
    let next = next_watch(&mut responses).await;
    assert_eq!(
        (next.watch_id(), seen(&next)),
        (fence, vec![(EventType::Put, "fence".into(), "f".into(), r5, None)]),
        "the cancelled watcher (id {id}) saw the put of k after its cancel"
    );

    // Below the compaction: created, then cancelled with the compaction's revision.
    client.compact(r3, None).await.unwrap();
    requests.watch("k", Some(WatchOptions::new().with_start_revision(r1))).await.unwrap();
    let created = next_watch(&mut responses).await;
    assert!(created.created() && !created.canceled(), "{created:?}");
    let compacted = next_watch(&mut responses).await;
    assert_eq!(
        (compacted.watch_id(), compacted.canceled(), compacted.compact_revision(), compacted.events().len()),
        (created.watch_id(), true, r3, 0),
        "watch k from {r1} after compaction at {r3}: {compacted:?}"
    );
    // The stream still serves its other watcher.
    let r6 = rev(client.put("fence", "g", None).await.unwrap().header());
    let next = next_watch(&mut responses).await;
    assert_eq!((next.watch_id(), seen(&next)), (fence, vec![(EventType::Put, "fence".into(), "g".into(), r6, None)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keepalive_stream_time_to_live_revoke_and_expiry() {
    let c = Cluster::start(1, "rs-lease");
    let mut client = connect(&c.members[0].endpoint()).await;

    // Two short leases, started first so their 4 s run alongside the rest: one nobody keeps
    // alive, one kept alive through a keepalive stream.
    let short = client.lease_grant(2, None).await.expect("grant 2 s").id();
    client.put("ephemeral", "v", Some(PutOptions::new().with_lease(short))).await.unwrap();
    let kept = client.lease_grant(2, None).await.expect("grant 2 s").id();
    client.put("kept", "v", Some(PutOptions::new().with_lease(kept))).await.unwrap();
    let start = Instant::now();
    let mut lease_client = client.lease_client();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_keeper = stop.clone();
    let keeper_task = tokio::spawn(async move {
        let (mut keeper, mut stream) = lease_client.keep_alive(kept).await.expect("open a keepalive stream");
        let mut answers = 0;
        while !stop_keeper.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            keeper.keep_alive().await.expect("send a keepalive");
            let answer = tokio::time::timeout(ANSWER, stream.message()).await.expect("a keepalive answer in time");
            let answer = answer.expect("keepalive stream").expect("keepalive stream ended");
            assert_eq!((answer.id(), answer.ttl()), (kept, 2), "keepalive answer");
            answers += 1;
        }
        answers
    });

    // Grant, with a chosen id too.
    let grant = client.lease_grant(60, None).await.expect("grant 60 s");
    let lease = grant.id();
    assert!(lease > 0 && grant.ttl() == 60, "{grant:?}");
    let chosen = client.lease_grant(30, Some(LeaseGrantOptions::new().with_id(0x1234))).await.unwrap();
    assert_eq!((chosen.id(), chosen.ttl()), (0x1234, 30));
    client.put("leased", "v", Some(PutOptions::new().with_lease(lease))).await.expect("put with a lease");
    client.put("leased2", "w", Some(PutOptions::new().with_lease(lease))).await.unwrap();
    assert_eq!(client.get("leased", None).await.unwrap().kvs()[0].lease(), lease);

    // A keepalive stream: several keepalives, each answered with the lease's TTL.
    let (mut keeper, mut stream) = client.lease_keep_alive(lease).await.expect("keepalive stream");
    assert_eq!(keeper.id(), lease);
    for n in 0..5 {
        keeper.keep_alive().await.expect("send a keepalive");
        let answer = tokio::time::timeout(ANSWER, stream.message()).await.expect("answer in time");
        let answer = answer.expect("keepalive stream").expect("keepalive stream ended");
        assert_eq!((answer.id(), answer.ttl()), (lease, 60), "keepalive answer {n}");
        assert!(answer.header().is_some(), "keepalive answers carry a header");
    }

    let ttl = client.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!((ttl.id(), ttl.granted_ttl()), (lease, 60));
    assert!((55..=60).contains(&ttl.ttl()), "remaining TTL just after a keepalive: {}", ttl.ttl());
    let mut attached: Vec<String> = ttl.keys().iter().map(|k| text(k)).collect();
    attached.sort();
    assert_eq!(attached, ["leased", "leased2"]);
    let without = client.lease_time_to_live(lease, None).await.unwrap();
    assert!(without.keys().is_empty(), "keys only when asked: {without:?}");

    let listed: HashSet<i64> = client.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect();
    assert!([lease, 0x1234, short, kept].iter().all(|id| listed.contains(id)), "leases {listed:?}");

    // Revoke deletes the keys; the lease is gone for every call after.
    client.lease_revoke(lease).await.expect("revoke");
    assert_eq!(client.get("leased", Some(GetOptions::new().with_prefix())).await.unwrap().count(), 0);
    let gone = client.lease_time_to_live(lease, None).await.expect("time-to-live of a revoked lease");
    assert_eq!(gone.ttl(), -1, "etcd answers TTL -1 for a lease it does not know: {gone:?}");
    keeper.keep_alive().await.unwrap();
    let answer = tokio::time::timeout(ANSWER, stream.message()).await.expect("answer in time").unwrap().unwrap();
    assert_eq!((answer.id(), answer.ttl()), (lease, 0), "a keepalive of a revoked lease answers TTL 0");
    assert_eq!(
        grpc_error(client.lease_revoke(lease).await),
        ("NotFound".into(), "etcdserver: requested lease not found".into()),
        "revoke {lease} twice"
    );
    assert!(!client.leases().await.unwrap().leases().iter().any(|l| l.id() == lease));

    // After 4 s: the lease nobody kept alive expired with its key; the kept one lives.
    tokio::time::sleep_until((start + Duration::from_secs(4)).into()).await;
    assert_eq!(client.get("ephemeral", None).await.unwrap().count(), 0, "an expired lease's key is gone");
    assert_eq!(client.lease_time_to_live(short, None).await.unwrap().ttl(), -1, "the expired lease is gone");
    assert_eq!(pairs(&client.get("kept", None).await.unwrap()), owned(&[("kept", "v")]), "kept alive: {}", c.logs());
    let ttl = client.lease_time_to_live(kept, None).await.unwrap();
    assert!((1..=2).contains(&ttl.ttl()), "the kept lease's TTL: {ttl:?}");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = keeper_task.await.expect("keepalive task");
    assert!(answers >= 5, "keepalives answered on the stream in 4 s: {answers}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_and_maintenance_calls() {
    let c = Cluster::start(1, "rs-maint");
    let m = &c.members[0];
    let mut client = connect(&m.endpoint()).await;

    let members = client.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 1, "{members:?}");
    let me = &members.members()[0];
    assert_eq!(
        (me.name(), me.client_urls(), me.peer_urls()),
        ("m1", &[m.client_url.clone()][..], &[m.peer_url.clone()][..])
    );
    assert!(me.id() != 0 && !me.is_learner(), "{me:?}");

    let status = client.status().await.expect("status");
    assert_eq!(status.version(), "3.5.0");
    assert_eq!(status.leader(), me.id(), "a single member leads");
    assert_eq!(status.header().expect("header").member_id(), me.id());
    assert!(status.raft_term() >= 1 && status.raft_index() >= 1, "{status:?}");
    assert!(status.raft_applied_index() >= 1, "{status:?}");
    assert!(!status.is_learner());

    // HashKV at the head: the header names the revision hashed (etcd 3.5.0 has no
    // hash_revision field); the hash is stable without writes and changes with one.
    let head = rev(client.get("x", None).await.unwrap().header());
    let h1 = client.hash_kv(0).await.expect("hash_kv");
    assert_eq!(rev(h1.header()), head, "hash_kv(0) hashes the head revision");
    let explicit = client.hash_kv(head).await.expect("hash_kv at the head revision");
    assert_eq!((rev(explicit.header()), explicit.hash()), (head, h1.hash()), "hash_kv({head}) and hash_kv(0)");
    let r2 = rev(client.put("hashed", "1", None).await.unwrap().header());
    let h2 = client.hash_kv(0).await.unwrap();
    assert_eq!(rev(h2.header()), r2);
    assert_ne!(h2.hash(), h1.hash(), "a write changes the hash");
    client.compact(r2, None).await.unwrap();
    assert_eq!(client.hash_kv(0).await.unwrap().compact_version(), r2, "hash_kv reports the compaction");

    // Snapshot streams the state image to its end.
    let mut snapshot = client.snapshot().await.expect("snapshot");
    let mut bytes = 0;
    loop {
        let part = tokio::time::timeout(ANSWER, snapshot.message()).await.expect("snapshot part in time");
        match part.expect("snapshot stream") {
            Some(part) => bytes += part.blob().len(),
            None => break,
        }
    }
    assert!(bytes > 0, "the snapshot is not empty");
}

/// HashKV at a revision other than the head, as etcd serves it: at a past revision the hash of
/// the store as it was then; above the head etcd's future-revision error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_kv_at_past_and_future_revisions() {
    let c = Cluster::start(1, "rs-hashkv");
    let mut client = connect(&c.members[0].endpoint()).await;
    let h1 = client.hash_kv(0).await.expect("hash_kv");
    let r1 = rev(h1.header());
    let r2 = rev(client.put("hashed", "1", None).await.unwrap().header());
    let again = client.hash_kv(r1).await.expect("hash_kv at a past revision");
    assert_eq!((rev(again.header()), again.hash()), (r1, h1.hash()), "hash_kv({r1}) after a write at {r2}");
    assert_eq!(
        grpc_error(client.hash_kv(r2 + 100).await),
        ("OutOfRange".into(), "etcdserver: mvcc: required revision is a future revision".into()),
        "hash_kv at {}",
        r2 + 100
    );
}

/// Three members: writes through every member's client (leader and followers), read back the
/// same everywhere; a watch on one member sees writes made through the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_serve_the_same_data_through_etcd_client() {
    let c = Cluster::start(3, "rs-three");
    let mut clients = Vec::new();
    for m in &c.members {
        clients.push(connect(&m.endpoint()).await);
    }
    let (_requests, mut watch) =
        clients[2].watch("m/", Some(WatchOptions::new().with_prefix())).await.expect("watch on m3").split();
    assert!(next_watch(&mut watch).await.created());

    let mut written = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let key = format!("m/{i}");
        let put = client.put(key.clone(), c.members[i].name.clone(), None).await;
        let r = rev(put.unwrap_or_else(|e| panic!("put through {}: {e}\n{}", c.members[i].name, c.logs())).header());
        written.push((key, c.members[i].name.clone(), r));
    }
    let revisions: Vec<i64> = written.iter().map(|w| w.2).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "one revision order across members: {revisions:?}");
    // A txn through a follower-or-leader, and a lease granted through one member, used through another.
    let txn = Txn::new()
        .when([Compare::value("m/0", CompareOp::Equal, "m1")])
        .and_then([TxnOp::put("m/txn", "ok", None)])
        .or_else([TxnOp::put("m/txn", "failed", None)]);
    assert!(clients[1].txn(txn).await.expect("txn through m2").succeeded());
    let lease = clients[0].lease_grant(60, None).await.expect("grant through m1").id();
    clients[2].put("m/leased", "l", Some(PutOptions::new().with_lease(lease))).await.expect("put through m3");
    let ttl = clients[1].lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await.unwrap();
    assert_eq!(ttl.keys(), [b"m/leased".to_vec()], "lease {lease} seen through m2: {ttl:?}");

    let expected = owned(&[("m/0", "m1"), ("m/1", "m2"), ("m/2", "m3"), ("m/leased", "l"), ("m/txn", "ok")]);
    let mut reads = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        let got = client.get("m/", Some(GetOptions::new().with_prefix())).await.expect("linearizable get");
        assert_eq!(pairs(&got), expected, "read through {}", c.members[i].name);
        let revs: Vec<(i64, i64)> = got.kvs().iter().map(|kv| (kv.create_revision(), kv.mod_revision())).collect();
        reads.push((revs, rev(got.header())));
    }
    assert!(reads.windows(2).all(|w| w[0] == w[1]), "members disagree on revisions: {reads:?}");
    for (key, value, r) in &written {
        let at = reads[0].0.iter().find(|(c, _)| c == r);
        assert!(at.is_some(), "{key}={value} at revision {r}: {reads:?}");
    }

    // The same leader and hash everywhere, at the same revision.
    let head = reads[0].1;
    let mut seen_status = Vec::new();
    for client in &mut clients {
        let status = client.status().await.expect("status");
        let hash = client.hash_kv(head).await.expect("hash_kv");
        seen_status.push((status.version().to_string(), status.leader(), hash.hash()));
    }
    assert!(seen_status[0].1 != 0 && seen_status.windows(2).all(|w| w[0] == w[1]), "status: {seen_status:?}");
    assert_eq!(seen_status[0].0, "3.5.0");
    let members = clients[1].member_list().await.unwrap();
    let mut names: Vec<&str> = members.members().iter().map(|m| m.name()).collect();
    names.sort();
    assert_eq!(names, ["m1", "m2", "m3"]);

    // The watch on m3 saw every write through every member, in revision order.
    let mut events = Vec::new();
    while events.len() < 5 {
        events.extend(seen(&next_watch(&mut watch).await).into_iter().map(|e| (e.1, e.2, e.3)));
    }
    let mut want: Vec<(String, String, i64)> = written.clone();
    for (k, v) in [("m/txn", "ok"), ("m/leased", "l")] {
        let got = clients[0].get(k, None).await.unwrap();
        want.push((k.to_string(), v.to_string(), got.kvs()[0].mod_revision()));
    }
    assert_eq!(events, want, "events watched through m3");
}
