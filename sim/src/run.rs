//! One simulated run: a cluster, clients, faults, then the checks. Only under `--cfg madsim`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd_proto::etcdserverpb::{HashKvRequest, PutRequest, RangeRequest};
use detcd_server::clock::Clock;
use detcd_server::config::ServerConfig;
use madsim::rand::Rng;
use madsim::runtime::{Handle, NodeHandle};

use crate::disk::SimDisk;

/// Largest drift of a member's clock, in parts per million either way (real oscillators stay
/// within about 100; we stress ten times that).
pub const CLOCK_DRIFT_PPM_MAX: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub members: usize,
    pub clients: usize,
    /// Of the fault phase, in simulated time.
    pub duration: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub operations: usize,
    pub acknowledged_writes: usize,
    pub faults: Vec<String>,
    /// FNV-1a over every client operation and its outcome, with simulated times: equal for
    /// equal seeds.
    pub trace_hash: u64,
    pub failure: Option<String>,
}

/// An acknowledged put: it must be in every member's history at `revision`.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    value: String,
    revision: i64,
}

#[derive(Default)]
struct Record {
    operations: usize,
    acks: Vec<Ack>,
    trace_hash: u64,
}

impl Record {
    fn trace(&mut self, words: &[u64], text: &str) {
        if self.trace_hash == 0 {
            self.trace_hash = 0xcbf2_9ce4_8422_2325;
        }
        for b in words.iter().flat_map(|w| w.to_le_bytes()).chain(text.bytes()) {
            self.trace_hash = (self.trace_hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn member_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

fn client_url(i: usize) -> String {
    format!("http://{}:2379", member_ip(i))
}

/// Runs one seed to the end; never panics on a failed check (the report says it).
pub fn run(options: &Options) -> Report {
    let runtime = madsim::runtime::Runtime::with_seed_and_config(options.seed, madsim::Config::default());
    runtime.block_on(simulate(options.clone()))
}

async fn simulate(o: Options) -> Report {
    let handle = Handle::current();
    let initial_cluster =
        (0..o.members).map(|i| format!("m{}=http://{}:2380", i + 1, member_ip(i))).collect::<Vec<_>>().join(",");
    let disks: Vec<SimDisk> = (0..o.members).map(|_| SimDisk::new()).collect();
    // Each member's own clock: an offset, a drift, and forward jumps the faults add.
    let clocks: Vec<(Duration, i64, Arc<AtomicU64>)> = (0..o.members)
        .map(|_| {
            let mut rng = madsim::rand::thread_rng();
            let offset = Duration::from_millis(rng.gen_range(0..10_000));
            (offset, rng.gen_range(-CLOCK_DRIFT_PPM_MAX..=CLOCK_DRIFT_PPM_MAX), Arc::new(AtomicU64::new(0)))
        })
        .collect();
    let mut members: Vec<NodeHandle> = Vec::new();
    for i in 0..o.members {
        let args: Vec<String> = vec![
            format!("--name=m{}", i + 1),
            format!("--listen-client-urls={}", client_url(i)),
            format!("--advertise-client-urls={}", client_url(i)),
            format!("--listen-peer-urls=http://{}:2380", member_ip(i)),
            format!("--initial-advertise-peer-urls=http://{}:2380", member_ip(i)),
            format!("--initial-cluster={initial_cluster}"),
            "--snapshot-count=50".into(),
            "--experimental-snapshot-catchup-entries=10".into(),
        ];
        let config = ServerConfig::parse(&args, &[]).expect("valid member flags");
        let disk = disks[i].clone();
        let (offset, drift_ppm, jumps) = clocks[i].clone();
        let node = handle
            .create_node()
            .name(format!("m{}", i + 1))
            .ip(member_ip(i))
            .init(move || {
                let (config, disk, jumps) = (config.clone(), disk.clone(), jumps.clone());
                // A new seed per boot, from the run's seed: proposal ids differ across restarts.
                let seed = madsim::rand::thread_rng().gen::<u64>();
                async move {
                    let clock = Clock::skewed(offset, drift_ppm, jumps);
                    if let Err(e) = detcd_server::serve(config, disk, seed, clock, std::future::pending()).await {
                        tracing::error!("member stopped: {e}");
                    }
                }
            })
            .build();
        members.push(node);
    }

    let record = Arc::new(Mutex::new(Record::default()));
    let stop_at = tokio::time::Instant::now() + o.duration;
    let mut clients = Vec::new();
    for c in 0..o.clients {
        let node = handle
            .create_node()
            .name(format!("client{c}"))
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, c as u8 + 1)))
            .build();
        let (record, members) = (record.clone(), o.members);
        clients.push(node.spawn(async move { client(c, members, stop_at, record).await }));
    }

    // Faults, one at a time, until the end of the fault phase.
    let mut faults = Vec::new();
    let net = madsim::net::NetSim::current();
    while tokio::time::Instant::now() < stop_at {
        let pause = Duration::from_millis(madsim::rand::thread_rng().gen_range(300..1500));
        tokio::time::sleep(pause).await;
        let victim = madsim::rand::thread_rng().gen_range(0..o.members);
        let outage = Duration::from_millis(madsim::rand::thread_rng().gen_range(500..3000));
        let at = tokio::time::Instant::now();
        let kind = madsim::rand::thread_rng().gen_range(0..10);
        if kind == 0 {
            let by = Duration::from_millis(madsim::rand::thread_rng().gen_range(100..3_000));
            faults.push(format!("clock of m{} jumps {by:?}", victim + 1));
            clocks[victim].2.fetch_add(by.as_nanos() as u64, Ordering::Relaxed);
        } else if kind < 5 {
            faults.push(format!("crash m{} for {outage:?}", victim + 1));
            handle.kill(members[victim].id());
            tokio::time::sleep(outage).await;
            handle.restart(members[victim].id());
        } else {
            faults.push(format!("isolate m{} for {outage:?}", victim + 1));
            net.clog_node(members[victim].id());
            tokio::time::sleep(outage).await;
            net.unclog_node(members[victim].id());
        }
        let _ = at;
    }
    for c in clients {
        let _ = c.await;
    }

    // Liveness phase: no faults. Every member must converge and hold every acknowledged write.
    let checker = handle.create_node().name("checker").ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1))).build();
    let acks = record.lock().map(|r| r.acks.clone()).unwrap_or_default();
    let members_n = o.members;
    let failure = checker
        .spawn(async move { check(members_n, acks).await })
        .await
        .unwrap_or_else(|_| Some("checker panicked".into()));
    let r = record.lock().map(|r| (r.operations, r.acks.len(), r.trace_hash)).unwrap_or_default();
    let skews =
        clocks.iter().enumerate().map(|(i, (offset, drift, _))| format!("m{} clock +{offset:?} {drift:+} ppm", i + 1));
    let faults = skews.chain(faults).collect();
    Report { operations: r.0, acknowledged_writes: r.1, faults, trace_hash: r.2, failure }
}

/// A client: unique writes and reads of five keys, through random members, each with a
/// deadline; it records what it was told.
async fn client(c: usize, members: usize, stop_at: tokio::time::Instant, record: Arc<Mutex<Record>>) {
    let mut i = 0u64;
    let mut connections: BTreeMap<usize, KvClient<tonic::transport::Channel>> = BTreeMap::new();
    while tokio::time::Instant::now() < stop_at {
        let (target, key, write) = {
            let mut rng = madsim::rand::thread_rng();
            (rng.gen_range(0..members), format!("k{}", rng.gen_range(0..5)), rng.gen_bool(0.6))
        };
        i += 1;
        if !connections.contains_key(&target) {
            match tokio::time::timeout(Duration::from_secs(1), KvClient::connect(client_url(target))).await {
                Ok(Ok(kv)) => {
                    connections.insert(target, kv);
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let kv = connections.get_mut(&target).expect("connected");
        let called = tokio::time::Instant::now();
        let deadline = Duration::from_secs(2);
        let value = format!("c{c}-{i}");
        let outcome = if write {
            let req =
                PutRequest { key: Bytes::from(key.clone()), value: Bytes::from(value.clone()), ..Default::default() };
            match tokio::time::timeout(deadline, kv.put(req)).await {
                Ok(Ok(r)) => Some(r.into_inner().header.map_or(0, |h| h.revision)),
                _ => None,
            }
        } else {
            let req = RangeRequest { key: Bytes::from(key.clone()), ..Default::default() };
            match tokio::time::timeout(deadline, kv.range(req)).await {
                Ok(Ok(r)) => Some(r.into_inner().header.map_or(0, |h| h.revision)),
                _ => None,
            }
        };
        if outcome.is_none() {
            // The connection may be to a dead member: dial again next time.
            connections.remove(&target);
        }
        let returned = tokio::time::Instant::now();
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        r.operations += 1;
        let nanos = |t: tokio::time::Instant| t.duration_since(stop_at - Duration::from_secs(3600)).as_nanos() as u64;
        r.trace(
            &[c as u64, write as u64, outcome.map_or(u64::MAX, |v| v as u64), nanos(called), nanos(returned)],
            &key,
        );
        if let (true, Some(revision)) = (write, outcome) {
            r.acks.push(Ack { key, value, revision });
        }
    }
}

/// After the faults: members converge to equal hashes, and every acknowledged write is in every
/// member's history at its revision. The first violation found, or None.
async fn check(members: usize, acks: Vec<Ack>) -> Option<String> {
    let mut agreed = false;
    let mut last = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut hashes = Vec::new();
        for i in 0..members {
            let Ok(Ok(mut m)) =
                tokio::time::timeout(Duration::from_secs(1), MaintenanceClient::connect(client_url(i))).await
            else {
                break;
            };
            match tokio::time::timeout(Duration::from_secs(1), m.hash_kv(HashKvRequest { revision: 0 })).await {
                Ok(Ok(r)) => {
                    let r = r.into_inner();
                    hashes.push((r.header.map_or(0, |h| h.revision), r.hash));
                }
                _ => break,
            }
        }
        last = format!("{hashes:?}");
        if hashes.len() == members && hashes.windows(2).all(|w| w[0] == w[1]) {
            agreed = true;
            break;
        }
    }
    if !agreed {
        return Some(format!("members did not converge to equal hashes: (revision, hash) per member {last}"));
    }
    for i in 0..members {
        let Ok(mut kv) = KvClient::connect(client_url(i)).await else {
            return Some(format!("cannot reach m{} after the faults", i + 1));
        };
        for ack in &acks {
            let req = RangeRequest {
                key: Bytes::from(ack.key.clone()),
                revision: ack.revision,
                serializable: true,
                ..Default::default()
            };
            let got = match kv.range(req).await {
                Ok(r) => r.into_inner().kvs.into_iter().next().map(|kv| (kv.value, kv.mod_revision)),
                Err(e) => return Some(format!("m{}: reading {} at {}: {e}", i + 1, ack.key, ack.revision)),
            };
            if got != Some((Bytes::from(ack.value.clone()), ack.revision)) {
                return Some(format!(
                    "m{} lost acknowledged write {}={} at revision {}: found {got:?}",
                    i + 1,
                    ack.key,
                    ack.value,
                    ack.revision
                ));
            }
        }
    }
    None
}
