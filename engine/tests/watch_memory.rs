//! Heap bytes per watcher in the watch hub, counted exactly by a counting global allocator
//! (this test binary's own allocator, so one test only: a second one running in parallel
//! would be counted too).
//!
//! The scenario is the one of the server RSS workload of docs/BENCHMARKS.md: 100,000
//! watchers of one key, 1,000 per stream, every created reply read. The bound is the figure
//! measured when it was written plus a margin, so that a change that makes every watcher
//! fatter shows up here rather than in a benchmark run nobody looks at.

use bytes::Bytes;
use detcd_engine::mvcc::{NoLeases, Store};
use detcd_engine::time::{Duration, Instant};
use detcd_engine::watch::WatchHub;
use detcd_proto::etcdserverpb::{PutRequest, WatchCreateRequest};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const WATCHERS: usize = 100_000;
const WATCHERS_PER_STREAM: usize = 1_000;
/// Measured 2026-11-23: 177 bytes (206 before the watcher's key became an `Arc<[u8]>`, 282
/// before the watchers of one key shared its bytes and the range end was boxed); see the
/// test's output (`cargo test -p detcd-engine --test watch_memory -- --nocapture`).
const BYTES_PER_WATCHER_MAX: usize = 195;

#[test]
fn a_hundred_thousand_watchers_of_one_key_stay_within_their_bytes_per_watcher() {
    let mut store = Store::new();
    let put =
        PutRequest { key: Bytes::from_static(b"00000000"), value: Bytes::from_static(b"v"), ..Default::default() };
    store.put(&put, &NoLeases).expect("put");
    let now = Instant::from_nanos(1_000_000_000);
    let mut hub = WatchHub::new(now, Duration::from_secs(600), &store);

    let before = counting_alloc::live_bytes();
    for i in 0..WATCHERS {
        let stream = (i / WATCHERS_PER_STREAM) as u64;
        // Each request is a fresh buffer, as a decoded gRPC message is.
        let req = WatchCreateRequest { key: Bytes::copy_from_slice(b"00000000"), ..Default::default() };
        hub.create(stream, &req);
        let created = hub.poll_response(stream).expect("a created reply");
        assert!(created.created && !created.canceled);
    }
    let after = counting_alloc::live_bytes();
    assert_eq!(hub.watcher_count(), WATCHERS);
    let per_watcher = (after - before) / WATCHERS;
    println!("{per_watcher} heap bytes per watcher ({} bytes for {WATCHERS} watchers)", after - before);
    assert!(per_watcher <= BYTES_PER_WATCHER_MAX, "{per_watcher} bytes per watcher, bound {BYTES_PER_WATCHER_MAX}");
    hub.invariants();
}
