//! `put-qps`: puts per second against any etcd v3 endpoint — detcd or etcd, the same client.
//!
//!     put-qps <endpoint> [clients=64] [seconds=10] [value-bytes=256]
//!
//! Each client is a task on one shared gRPC connection, putting to its own keys in a loop.
//! Prints one line: total puts, seconds, puts/s, errors. A measurement, not a test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::PutRequest;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(endpoint) = args.first().cloned() else {
        eprintln!("usage: put-qps <endpoint> [clients=64] [seconds=10] [value-bytes=256]");
        std::process::exit(2);
    };
    let number = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (clients, seconds, value_bytes) = (number(1, 64), number(2, 10), number(3, 256) as usize);
    let endpoint = if endpoint.starts_with("http") { endpoint } else { format!("http://{endpoint}") };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let client = KvClient::connect(endpoint.clone()).await.expect("connect");
        let done = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let value = Bytes::from(vec![b'v'; value_bytes]);
        let started = Instant::now();
        let stop = started + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (mut client, done, errors, value) = (client.clone(), done.clone(), errors.clone(), value.clone());
                tokio::task::spawn(async move {
                    let mut i = 0u64;
                    while Instant::now() < stop {
                        let key = Bytes::from(format!("bench/{c}/{}", i % 1000));
                        match client.put(PutRequest { key, value: value.clone(), ..Default::default() }).await {
                            Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                        i += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
        let secs = started.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        println!(
            "{endpoint}: {n} puts in {secs:.1} s = {:.0} puts/s with {clients} clients, {value_bytes}-byte values, {} errors",
            n as f64 / secs,
            errors.load(Ordering::Relaxed)
        );
    });
}
