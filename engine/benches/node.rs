//! Node benchmarks, through the deterministic in-process cluster (no IO, virtual network):
//!
//! 1. committed puts per second through a 3-member cluster, 256 requests in flight;
//! 2. with 1,000,000 keys of 256 bytes on one member: the longest pause of the apply path
//!    (the longest single event, which is the one that takes the state image for a snapshot),
//!    and the time to recover the member from its disk (state image + log tail).
//!
//!     cargo bench -p detcd-engine --bench node
//!     DETCD_BENCH_KEYS=100000 cargo bench -p detcd-engine --bench node
//!
//! A benchmark, not a test: it prints figures and asserts only that the work was done.

use std::collections::BTreeMap;
use std::time::Instant as WallClock;

use bytes::Bytes;
use detcd_engine::harness::Cluster;
use detcd_engine::node::{Config, Request};
use detcd_engine::time::Duration;
use detcd_proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};

const VALUE_BYTES: usize = 256;

fn put(key: String, value: &Bytes) -> PutRequest {
    PutRequest { key: Bytes::from(key), value: value.clone(), ..Default::default() }
}

/// Issues `total` requests made by `make` to member `id`, `window` at a time; returns how many
/// succeeded.
fn pipeline(c: &mut Cluster, id: u64, total: usize, window: usize, mut make: impl FnMut(usize) -> Request) -> usize {
    let (mut issued, mut done, mut ok) = (0, 0, 0);
    while done < total {
        while issued < total && issued - done < window {
            c.request(id, make(issued));
            issued += 1;
        }
        assert!(c.run_until(Duration::from_secs(60), |c| c.has_responses(id)), "no progress");
        for (_, r) in c.take_responses(id) {
            done += 1;
            ok += r.is_ok() as usize;
        }
    }
    ok
}

fn main() {
    let keys: usize = std::env::var("DETCD_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    println!("detcd-engine node benchmark ({keys} keys for the snapshot figures)\n");
    println!("| measurement | value |");
    println!("|---|---|");

    // 1. Throughput through three members.
    let mut c = Cluster::new(3, 1);
    let leader = c.wait_for_leader();
    let total = (keys / 20).max(1_000);
    let started = WallClock::now();
    let ok = pipeline(&mut c, leader, total, 256, |i| Request::Put(put(format!("k{:08}", i % 10_000), &value)));
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(ok, total);
    println!(
        "| committed puts/s, 3 members, 256 in flight (wall clock, no IO) | {:.0} ({total} puts in {secs:.2} s) |",
        total as f64 / secs
    );

    // 2. One member with `keys` keys: load through txns of 128 puts, then force a snapshot.
    let batches = keys.div_ceil(128);
    let mut config = Config::new(1, vec![1]);
    // Applied after the load: the bootstrap snapshot (1), the leader's empty entry, `batches - 1`
    // txns; the put after it is the entry that reaches `snapshot_index + snapshot_count`.
    config.snapshot_count = batches as u64 + 1;
    config.snapshot_catch_up_entries = 100;
    let mut c = Cluster::with_configs(BTreeMap::from([(1, config)]), 2);
    let leader = c.wait_for_leader();
    let started = WallClock::now();
    let ok = pipeline(&mut c, leader, batches - 1, 64, |b| {
        let success = (b * 128..((b + 1) * 128).min(keys))
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(put(format!("/registry/pods/key{i:08}"), &value))),
            })
            .collect();
        Request::Txn(TxnRequest { compare: vec![], success, failure: vec![] })
    });
    assert_eq!(ok, batches - 1);
    println!(
        "| load {} keys in txns of 128 puts, 1 member | {:.1} s |",
        (batches - 1) * 128,
        started.elapsed().as_secs_f64()
    );

    // The next entries cross snapshot_count: the event that applies it takes the image.
    let before = c.node(leader).unwrap().snapshot_index();
    let rid = c.request(leader, Request::Put(put("/last".into(), &value)));
    let mut longest = std::time::Duration::ZERO;
    let mut last = WallClock::now();
    let done = c.run_until(Duration::from_secs(60), |c| {
        let now = WallClock::now();
        longest = longest.max(now - last);
        last = now;
        c.node(leader).unwrap().snapshot_index() > before && c.has_responses(leader)
    });
    assert!(done, "the snapshot was not taken");
    let _ = rid;
    let image_bytes = c.disk(leader).snapshot.as_ref().map_or(0, |s| s.data.len());
    println!(
        "| longest apply-path pause while the state image is taken (one event) | {:.0} ms |",
        longest.as_secs_f64() * 1000.0
    );
    println!("| state image size | {:.0} MiB |", image_bytes as f64 / (1024.0 * 1024.0));

    // Recovery: image + the log tail written after it.
    let tail = 2_000;
    pipeline(&mut c, leader, tail, 256, |i| Request::Put(put(format!("/tail/{i}"), &value)));
    let hash = c.node(leader).unwrap().store().hash_kv(0).unwrap();
    c.crash(leader);
    let started = WallClock::now();
    c.restart(leader);
    let restart = started.elapsed();
    assert!(c.run_until(Duration::from_secs(60), |c| c.node(leader).unwrap().applied_index()
        >= c.node(leader).unwrap().commit_index()
        && c.leader() == Some(leader)));
    let recovered = started.elapsed();
    assert_eq!(c.node(leader).unwrap().store().hash_kv(0).unwrap(), hash);
    println!("| recover from disk: decode the image ({} keys) | {:.0} ms |", keys, restart.as_secs_f64() * 1000.0);
    println!(
        "| recover from disk: image + replay {tail} entries + re-election | {:.0} ms |",
        recovered.as_secs_f64() * 1000.0
    );
}
