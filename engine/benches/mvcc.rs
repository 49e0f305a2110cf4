//! MVCC store benchmark: put and range throughput with 1,000,000 keys, and memory per key with
//! 256-byte values. A benchmark, not a test: it prints figures and asserts no times.
//!
//!     cargo bench -p detcd-engine --bench mvcc            # 1,000,000 keys
//!     DETCD_BENCH_KEYS=100000 cargo bench -p detcd-engine --bench mvcc
//!
//! Memory is measured exactly, by a counting global allocator: the bytes live on the heap
//! after loading, divided by the number of keys.

use std::time::Instant;

use bytes::Bytes;
use detcd_engine::mvcc::{NoLeases, Store};
use detcd_proto::etcdserverpb::{CompactionRequest, PutRequest, RangeRequest};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const VALUE_BYTES: usize = 256;

fn key(i: u64) -> Bytes {
    Bytes::from(format!("/registry/pods/key{i:08}"))
}

fn report(what: &str, ops: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!("| {what} | {ops} | {:.3} | {:.0} |", secs, ops as f64 / secs);
}

fn main() {
    // `cargo bench` passes `--bench`; there are no other arguments to read.
    let keys: u64 = std::env::var("DETCD_BENCH_KEYS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let mut rng = StdRng::seed_from_u64(7);
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let mut store = Store::new();
    println!("detcd-engine MVCC benchmark: {keys} keys, {VALUE_BYTES}-byte values, keys like {:?}\n", key(0));
    println!("| operation | ops | seconds | ops/s |");
    println!("|---|---|---|---|");

    let heap_before = counting_alloc::live_bytes();
    let started = Instant::now();
    for i in 0..keys {
        let req = PutRequest { key: key(i), value: value.clone(), ..Default::default() };
        store.put(&req, &NoLeases).expect("put");
    }
    report("put, new keys (store growing to N)", keys, started);
    let heap_bytes = counting_alloc::live_bytes() - heap_before;

    let overwrites = keys / 5;
    let started = Instant::now();
    for _ in 0..overwrites {
        let req = PutRequest { key: key(rng.gen_range(0..keys)), value: value.clone(), ..Default::default() };
        store.put(&req, &NoLeases).expect("put");
    }
    report("put, overwrite random key (N keys)", overwrites, started);

    let reads = keys;
    let started = Instant::now();
    let mut found = 0usize;
    for _ in 0..reads {
        let req = RangeRequest { key: key(rng.gen_range(0..keys)), ..Default::default() };
        found += store.range(&req).expect("range").kvs.len();
    }
    report("range, one random key", reads, started);
    assert_eq!(found as u64, reads);

    let scans = 100_000u64;
    let started = Instant::now();
    for _ in 0..scans {
        let first = rng.gen_range(0..keys.saturating_sub(100).max(1));
        let req = RangeRequest { key: key(first), range_end: key(first + 100), ..Default::default() };
        store.range(&req).expect("range");
    }
    report("range, 100 consecutive keys", scans, started);

    let started = Instant::now();
    let all = store
        .range(&RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            count_only: true,
            ..Default::default()
        })
        .expect("count");
    report("range, count_only over all keys", 1, started);
    assert_eq!(all.count as u64, keys);

    let started = Instant::now();
    let hash = store.hash_kv(0).expect("hash");
    report("hash_kv at current revision", 1, started);

    let started = Instant::now();
    store.compact(&CompactionRequest { revision: store.current_revision(), physical: false }).expect("compact");
    report("compact at current revision", 1, started);

    println!();
    println!(
        "heap after loading {keys} keys: {} bytes = {:.0} bytes per key ({VALUE_BYTES}-byte value, {}-byte key)",
        heap_bytes,
        heap_bytes as f64 / keys as f64,
        key(0).len()
    );
    println!("revision {}, hash {:#010x}", store.current_revision(), hash.hash);
}
