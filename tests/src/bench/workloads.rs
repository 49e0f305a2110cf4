//! The workloads: unary ones (put, range, txn-put) through one driver, and the streaming ones
//! (watch, watch-latency, lease-keepalive).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::lease_client::LeaseClient;
use detcd_proto::etcdserverpb::watch_client::WatchClient;
use detcd_proto::etcdserverpb::{
    request_op, watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::args::Args;
use super::report::{Latencies, Report};
use super::{check_key_space, error_message, key_bytes, rss_kib, Global, Pacer, Progress, Random};

/// One unary request kind, with what varies per request computed from its number.
enum Op {
    Put { key_size: usize, key_space: u64, sequential: bool, value: Bytes },
    Range(RangeRequest),
    TxnPut { txn_ops: u64, key_size: usize, key_space: u64, value: Bytes },
}

/// What a set of clients did: answers, failures by message, latencies of the answered requests.
#[derive(Default)]
struct Driven {
    ok: u64,
    errors: BTreeMap<String, u64>,
    latencies: Latencies,
}

impl Driven {
    fn merge(&mut self, other: Driven) {
        self.ok += other.ok;
        for (message, n) in other.errors {
            *self.errors.entry(message).or_default() += n;
        }
        self.latencies.merge(other.latencies);
    }

    fn into_report(self, workload: &str, elapsed: Duration) -> Report {
        Report {
            workload: workload.into(),
            ok: self.ok,
            count: self.ok,
            unit: "requests",
            errors: self.errors,
            elapsed,
            latencies: self.latencies,
            extra: Vec::new(),
        }
    }
}

/// How many requests a run makes and how fast.
#[derive(Clone, Copy)]
struct Bounds {
    total: Option<u64>,
    deadline: Option<Instant>,
    rate: Option<u64>,
}

/// Runs `op` from `clients` tasks spread over `channels` until `bounds` say stop; `done` counts
/// finished requests for the progress line.
async fn drive(
    global: &Global,
    channels: &[Channel],
    clients: usize,
    op: Arc<Op>,
    bounds: Bounds,
    done: Arc<AtomicU64>,
) -> Driven {
    let next = Arc::new(AtomicU64::new(0));
    let pacer = Pacer::new(Instant::now(), bounds.rate);
    let timeout = global.request_timeout;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let mut kv = KvClient::new(channels[c % channels.len()].clone());
            let (op, next, done) = (op.clone(), next.clone(), done.clone());
            let mut random = Random::new(global.seed, c as u64);
            tokio::task::spawn(async move {
                let mut driven = Driven::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if bounds.total.is_some_and(|t| i >= t) || bounds.deadline.is_some_and(|d| Instant::now() >= d) {
                        return driven;
                    }
                    pacer.wait(i).await;
                    let started = Instant::now();
                    let answer = tokio::time::timeout(timeout, one_request(&mut kv, &op, i, &mut random)).await;
                    match answer {
                        Ok(Ok(())) => {
                            driven.ok += 1;
                            driven.latencies.record(started.elapsed());
                        }
                        Ok(Err(status)) => *driven.errors.entry(error_message(&status)).or_default() += 1,
                        Err(_) => {
                            let message = format!("no answer within --request-timeout {timeout:?}");
                            *driven.errors.entry(message).or_default() += 1;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut all = Driven::default();
    for task in tasks {
        match task.await {
            Ok(driven) => all.merge(driven),
            Err(e) => *all.errors.entry(format!("client task failed: {e}")).or_default() += 1,
        }
    }
    all
}

async fn one_request(kv: &mut KvClient<Channel>, op: &Op, i: u64, random: &mut Random) -> Result<(), tonic::Status> {
    match op {
        Op::Put { key_size, key_space, sequential, value } => {
            let n = if *sequential { i % key_space } else { random.below(*key_space) };
            let put = PutRequest { key: key_bytes(n, *key_size), value: value.clone(), ..Default::default() };
            kv.put(put).await.map(drop)
        }
        Op::Range(request) => kv.range(request.clone()).await.map(drop),
        Op::TxnPut { txn_ops, key_size, key_space, value } => {
            // etcd's txn-put: consecutive keys, so a txn never names one key twice.
            let success = (0..*txn_ops)
                .map(|j| RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key_bytes((i * txn_ops + j) % key_space, *key_size),
                        value: value.clone(),
                        ..Default::default()
                    })),
                })
                .collect();
            kv.txn(TxnRequest { success, ..Default::default() }).await.map(drop)
        }
    }
}

/// A unary workload under the global bounds, with the progress line.
async fn unary(global: &Global, workload: &str, op: Op) -> Result<Report, String> {
    let channels = global.connect().await?;
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(global.progress, "requests", done.clone(), global.total);
    let started = Instant::now();
    let bounds = Bounds { total: global.total, deadline: global.duration.map(|d| started + d), rate: global.rate };
    let driven = drive(global, &channels, global.clients, Arc::new(op), bounds, done).await;
    let elapsed = started.elapsed();
    drop(progress);
    Ok(driven.into_report(workload, elapsed))
}

fn value_of(size: u64) -> Bytes {
    Bytes::from(vec![b'v'; size as usize])
}

fn no_positional(args: &Args) -> Result<(), String> {
    match args.positional.first() {
        Some(extra) => Err(format!("{}: unexpected argument {extra:?}", args.command)),
        None => Ok(()),
    }
}

pub async fn put(global: &Global, args: &Args) -> Result<Report, String> {
    no_positional(args)?;
    let key_size = args.positive("key-size", 8)?;
    let key_space = args.positive("key-space-size", 1)?;
    check_key_space(key_size, key_space)?;
    let op = Op::Put {
        key_size: key_size as usize,
        key_space,
        sequential: args.switch("sequential-keys")?,
        value: value_of(args.number("val-size", 8)?),
    };
    let mut report = unary(global, "put", op).await?;
    report.extra.push(("key_space_size".into(), json!(key_space)));
    Ok(report)
}

pub async fn range(global: &Global, args: &Args) -> Result<Report, String> {
    let (key, end) = match args.positional.as_slice() {
        [key] => (key.clone(), String::new()),
        [key, end] => (key.clone(), end.clone()),
        _ => return Err("range takes KEY and an optional END".into()),
    };
    let serializable = match args.string("consistency", "l").as_str() {
        "l" => false,
        "s" => true,
        other => return Err(format!("--consistency: expected l or s, got {other:?}")),
    };
    let request = RangeRequest {
        key: Bytes::from(key),
        range_end: Bytes::from(end),
        limit: args.number("limit", 0)? as i64,
        serializable,
        count_only: args.switch("count-only")?,
        ..Default::default()
    };
    let mut report = unary(global, "range", Op::Range(request)).await?;
    report.extra.push(("consistency".into(), json!(if serializable { "s" } else { "l" })));
    Ok(report)
}

pub async fn txn_put(global: &Global, args: &Args) -> Result<Report, String> {
    no_positional(args)?;
    let txn_ops = args.positive("txn-ops", 1)?;
    let key_size = args.positive("key-size", 8)?;
    let key_space = args.positive("key-space-size", 1)?;
    check_key_space(key_size, key_space)?;
    if txn_ops > key_space {
        return Err(format!("--txn-ops {txn_ops} exceeds --key-space-size {key_space}: a txn would put a key twice"));
    }
    let op =
        Op::TxnPut { txn_ops, key_size: key_size as usize, key_space, value: value_of(args.number("val-size", 8)?) };
    let mut report = unary(global, "txn-put", op).await?;
    report.extra.push(("txn_ops".into(), json!(txn_ops)));
    Ok(report)
}

/// The summed VmRSS of `--rss-pids`, when given.
fn rss_sum_kib(global: &Global) -> Result<Option<u64>, String> {
    if global.rss_pids.is_empty() {
        return Ok(None);
    }
    global.rss_pids.iter().map(|&pid| rss_kib(pid)).sum::<Result<u64, String>>().map(Some)
}

/// One watch stream: its watchers created, then counting events until `expected` arrived.
struct WatchStream {
    created: oneshot::Receiver<Result<(), String>>,
    finished: oneshot::Receiver<Instant>,
    task: tokio::task::JoinHandle<()>,
}

/// Opens a stream on `channel` with one watcher per key in `keys`; every response with events
/// goes to `on_events` (with its arrival time) until `expected` events arrived.
fn open_watch_stream(
    channel: Channel,
    keys: Vec<Bytes>,
    prev_kv: bool,
    expected: u64,
    on_events: impl Fn(&[detcd_proto::mvccpb::Event], Instant) + Send + 'static,
) -> WatchStream {
    let (created_tx, created) = oneshot::channel();
    let (finished_tx, finished) = oneshot::channel();
    let task = tokio::task::spawn(async move {
        let watchers = keys.len();
        // The creates are queued before the call: a server sends its response headers with the
        // first answer, and the call returns only then.
        let (tx, rx) = mpsc::unbounded_channel();
        for key in keys {
            let create = WatchCreateRequest { key, prev_kv, ..Default::default() };
            let _ = tx.send(WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) });
        }
        let mut client = WatchClient::new(channel);
        let mut inbound = match client.watch(UnboundedReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let _ = created_tx.send(Err(error_message(&status)));
                return;
            }
        };
        let mut created_count = 0;
        let mut created_tx = Some(created_tx);
        let mut finished_tx = Some(finished_tx);
        let mut events = 0u64;
        loop {
            let next = match inbound.message().await {
                Ok(Some(response)) => Ok(response),
                Ok(None) => Err("watch stream closed by the server".to_string()),
                Err(status) => Err(error_message(&status)),
            };
            let response = match next {
                Ok(response) => response,
                Err(message) => {
                    // Reported when the creates are still awaited; later, the missing events tell.
                    if let Some(t) = created_tx.take() {
                        let _ = t.send(Err(message));
                    }
                    return;
                }
            };
            if response.canceled {
                let reason = format!("watch canceled: {}", response.cancel_reason);
                if let Some(t) = created_tx.take() {
                    let _ = t.send(Err(reason));
                }
                return;
            }
            if response.created {
                created_count += 1;
                if created_count == watchers {
                    let _ = created_tx.take().map(|t| t.send(Ok(())));
                }
            }
            if !response.events.is_empty() {
                on_events(&response.events, Instant::now());
                events += response.events.len() as u64;
            }
            if events >= expected {
                let _ = finished_tx.take().map(|t| t.send(Instant::now()));
            }
        }
    });
    WatchStream { created, finished, task }
}

/// Waits until every stream's watchers exist; the first failure ends the run.
async fn all_created(streams: &mut [WatchStream], within: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    for (s, stream) in streams.iter_mut().enumerate() {
        match tokio::time::timeout_at(deadline, &mut stream.created).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(format!("watch stream {s}: {e}")),
            Ok(Err(_)) => return Err(format!("watch stream {s} ended before its watchers were created")),
            Err(_) => return Err(format!("watchers not created within {within:?}")),
        }
    }
    Ok(())
}

/// Waits for every stream to have all its events, until `deadline`; the latest arrival, or
/// `None` when some stream fell short.
async fn all_finished(streams: &mut [WatchStream], deadline: Instant) -> Option<Instant> {
    let mut last: Option<Instant> = None;
    for stream in streams.iter_mut() {
        match tokio::time::timeout_at(deadline.into(), &mut stream.finished).await {
            Ok(Ok(at)) => last = Some(last.map_or(at, |l| l.max(at))),
            _ => return None,
        }
    }
    last
}

pub async fn watch(global: &Global, args: &Args) -> Result<Report, String> {
    no_positional(args)?;
    let streams = args.positive("streams", 10)?;
    let per_stream = args.positive("watch-per-stream", 100)?;
    let key_total = args.positive("watched-key-total", 1)?;
    let put_total = args.number("put-total", 1000)?;
    let put_rate = args.number("put-rate", 0)?;
    let key_size = args.positive("key-size", 32)?;
    let value = value_of(args.number("val-size", 8)?);
    let event_timeout = args.duration("event-timeout", Duration::from_secs(60))?;
    check_key_space(key_size, key_total)?;
    let channels = global.connect().await?;
    let rss_before = rss_sum_kib(global)?;

    // Watcher w watches key w % key_total; put j goes to key j % key_total.
    let events_of_key = |k: u64| put_total / key_total + u64::from(k < put_total % key_total);
    let delivered = Arc::new(AtomicU64::new(0));
    // Responses that carried events: how many events a server packs into one tells what a
    // delivered event costs the client.
    let event_responses = Arc::new(AtomicU64::new(0));
    let creating = Instant::now();
    let mut opened: Vec<WatchStream> = (0..streams)
        .map(|s| {
            let watchers: Vec<u64> = (0..per_stream).map(|k| (s * per_stream + k) % key_total).collect();
            let expected = watchers.iter().map(|&k| events_of_key(k)).sum();
            let keys = watchers.iter().map(|&k| key_bytes(k, key_size as usize)).collect();
            let (delivered, event_responses) = (delivered.clone(), event_responses.clone());
            let channel = channels[s as usize % channels.len()].clone();
            open_watch_stream(channel, keys, false, expected, move |events, _| {
                delivered.fetch_add(events.len() as u64, Ordering::Relaxed);
                event_responses.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    all_created(&mut opened, event_timeout).await?;
    let created_s = creating.elapsed().as_secs_f64();
    let rss_with_watchers = rss_sum_kib(global)?;

    let progress =
        Progress::start(global.progress, "events", delivered.clone(), Some(put_total * streams * per_stream));
    let started = Instant::now();
    let bounds = Bounds { total: Some(put_total), deadline: None, rate: (put_rate > 0).then_some(put_rate) };
    let op = Op::Put { key_size: key_size as usize, key_space: key_total, sequential: true, value };
    let puts = drive(global, &channels, global.clients, Arc::new(op), bounds, Arc::new(AtomicU64::new(0))).await;
    let expected = put_total * streams * per_stream;
    let ending = EventsEnding { opened, progress, delivered, started, event_timeout, expected };
    let mut report = ending.report("watch", puts, streams * per_stream).await;
    report.extra.push(("streams".into(), json!(streams)));
    report.extra.push(("event_responses".into(), json!(event_responses.load(Ordering::Relaxed))));
    report.extra.push(("watchers_created_s".into(), json!(created_s)));
    if let (Some(before), Some(with)) = (rss_before, rss_with_watchers) {
        report.extra.push(("server_rss_kib_before_watchers".into(), json!(before)));
        report.extra.push(("server_rss_kib_with_watchers".into(), json!(with)));
    }
    Ok(report)
}

pub async fn watch_latency(global: &Global, args: &Args) -> Result<Report, String> {
    no_positional(args)?;
    let streams = args.positive("streams", 10)?;
    let per_stream = args.positive("watchers-per-stream", 10)?;
    let put_total = args.number("put-total", 1000)?;
    let put_rate = args.number("put-rate", 100)?;
    let prev_kv = args.switch("prevkv")?;
    let val_size = args.number("val-size", 32)? as usize;
    let event_timeout = args.duration("event-timeout", Duration::from_secs(60))?;
    let channels = global.connect().await?;
    let key = Bytes::from_static(b"detcd-bench/watch-latency");

    // When put i was sent, in nanoseconds after `base` plus one (0: not sent yet). Each value
    // carries its put's number, so a watcher finds the send time of the event it sees.
    let base = Instant::now();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..put_total).map(|_| AtomicU64::new(0)).collect());
    let latencies = Arc::new(Mutex::new(Latencies::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let mut opened: Vec<WatchStream> = (0..streams)
        .map(|s| {
            let (sent_at, latencies, delivered) = (sent_at.clone(), latencies.clone(), delivered.clone());
            let keys = vec![key.clone(); per_stream as usize];
            let channel = channels[s as usize % channels.len()].clone();
            open_watch_stream(channel, keys, prev_kv, put_total * per_stream, move |events, at| {
                let mut latencies = latencies.lock().expect("latencies lock");
                for event in events {
                    let number =
                        event.kv.as_ref().and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<usize>().ok());
                    let sent = number.and_then(|i| sent_at.get(i)).map(|s| s.load(Ordering::Acquire));
                    if let Some(sent_nanos) = sent.filter(|&s| s > 0) {
                        let sent = base + Duration::from_nanos(sent_nanos - 1);
                        latencies.record(at.saturating_duration_since(sent));
                    }
                }
                delivered.fetch_add(events.len() as u64, Ordering::Relaxed);
            })
        })
        .collect();
    all_created(&mut opened, event_timeout).await?;

    let expected = put_total * streams * per_stream;
    let progress = Progress::start(global.progress, "events", delivered.clone(), Some(expected));
    let started = Instant::now();
    let pacer = Pacer::new(started, (put_rate > 0).then_some(put_rate));
    let mut kv = KvClient::new(channels[0].clone());
    let mut puts = Driven::default();
    for i in 0..put_total {
        pacer.wait(i).await;
        let value = Bytes::from(format!("{i:0val_size$}"));
        let sending = Instant::now();
        sent_at[i as usize].store((sending - base).as_nanos() as u64 + 1, Ordering::Release);
        let put = PutRequest { key: key.clone(), value, ..Default::default() };
        match tokio::time::timeout(global.request_timeout, kv.put(put)).await {
            Ok(Ok(_)) => puts.ok += 1,
            Ok(Err(status)) => *puts.errors.entry(error_message(&status)).or_default() += 1,
            Err(_) => *puts.errors.entry("put: no answer within --request-timeout".into()).or_default() += 1,
        }
    }
    let ending = EventsEnding { opened, progress, delivered, started, event_timeout, expected };
    let mut report = ending.report("watch-latency", puts, streams * per_stream).await;
    report.latencies = std::mem::take(&mut *latencies.lock().expect("latencies lock"));
    Ok(report)
}

/// What `watch` and `watch-latency` have in hand once their puts are done.
struct EventsEnding {
    opened: Vec<WatchStream>,
    progress: Progress,
    delivered: Arc<AtomicU64>,
    started: Instant,
    event_timeout: Duration,
    expected: u64,
}

impl EventsEnding {
    /// Waits (up to the event timeout) for every watcher to get its events, stops the streams
    /// and reports events delivered; missing events count as errors.
    async fn report(mut self, workload: &str, puts: Driven, watchers: u64) -> Report {
        let puts_done = Instant::now();
        // Only the puts that succeeded produce events.
        let finished = if puts.errors.is_empty() {
            all_finished(&mut self.opened, puts_done + self.event_timeout).await
        } else {
            None
        };
        let ended = finished.unwrap_or_else(Instant::now).max(puts_done);
        drop(self.progress);
        for stream in &self.opened {
            stream.task.abort();
        }
        let events = self.delivered.load(Ordering::Relaxed);
        let puts_ok = puts.ok;
        let mut report = puts.into_report(workload, ended - self.started);
        report.unit = "events";
        report.count = events;
        if events < self.expected && report.errors.is_empty() {
            let message = format!("events not delivered within --event-timeout {:?}", self.event_timeout);
            report.count_error(message, self.expected - events);
        }
        report.extra.push(("watchers".into(), json!(watchers)));
        report.extra.push(("puts".into(), json!(puts_ok)));
        report.extra.push(("expected_events".into(), json!(self.expected)));
        report
    }
}

/// Time-to-live of each client's lease: long enough never to expire during a run.
const LEASE_TTL_S: i64 = 100;

pub async fn lease_keepalive(global: &Global, args: &Args) -> Result<Report, String> {
    no_positional(args)?;
    let channels = global.connect().await?;
    let done = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(global.progress, "keepalives", done.clone(), global.total);
    let started = Instant::now();
    let deadline = global.duration.map(|d| started + d);
    let next = Arc::new(AtomicU64::new(0));
    let total = global.total;
    let timeout = global.request_timeout;
    let tasks: Vec<_> = (0..global.clients)
        .map(|c| {
            let mut lease = LeaseClient::new(channels[c % channels.len()].clone());
            let (next, done) = (next.clone(), done.clone());
            tokio::task::spawn(async move {
                let mut driven = Driven::default();
                let id = match lease.lease_grant(LeaseGrantRequest { ttl: LEASE_TTL_S, id: 0 }).await {
                    Ok(granted) => granted.into_inner().id,
                    Err(status) => {
                        driven.errors.insert(format!("lease grant: {}", error_message(&status)), 1);
                        return (driven, None);
                    }
                };
                // The first request is queued before the call (see open_watch_stream).
                let (tx, rx) = mpsc::unbounded_channel();
                let mut rx = Some(rx);
                let mut inbound: Option<tonic::Streaming<LeaseKeepAliveResponse>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if total.is_some_and(|t| i >= t) || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let sending = Instant::now();
                    if tx.send(LeaseKeepAliveRequest { id }).is_err() {
                        driven.errors.insert("keepalive stream closed".into(), 1);
                        break;
                    }
                    let answer = tokio::time::timeout(timeout, async {
                        if inbound.is_none() {
                            let rx = rx.take().expect("the receiver is taken once, by the first call");
                            inbound =
                                Some(lease.lease_keep_alive(UnboundedReceiverStream::new(rx)).await?.into_inner());
                        }
                        inbound.as_mut().expect("the stream was opened above").message().await
                    })
                    .await;
                    done.fetch_add(1, Ordering::Relaxed);
                    let failure = match answer {
                        Ok(Ok(Some(kept))) if kept.ttl > 0 => {
                            driven.ok += 1;
                            driven.latencies.record(sending.elapsed());
                            continue;
                        }
                        Ok(Ok(Some(_))) => "lease not found or expired (TTL 0 in the keepalive answer)".to_string(),
                        Ok(Ok(None)) => "keepalive stream closed by the server".to_string(),
                        Ok(Err(status)) => error_message(&status),
                        Err(_) => format!("no answer within --request-timeout {timeout:?}"),
                    };
                    // A broken stream ends this client: its later keepalives could not be sent.
                    *driven.errors.entry(failure).or_default() += 1;
                    break;
                }
                (driven, Some((lease, id)))
            })
        })
        .collect();
    let mut all = Driven::default();
    let mut leases = Vec::new();
    for task in tasks {
        match task.await {
            Ok((driven, lease)) => {
                all.merge(driven);
                leases.extend(lease);
            }
            Err(e) => *all.errors.entry(format!("client task failed: {e}")).or_default() += 1,
        }
    }
    let elapsed = started.elapsed();
    drop(progress);
    for (mut lease, id) in leases {
        let _ = lease.lease_revoke(LeaseRevokeRequest { id }).await;
    }
    Ok(all.into_report("lease-keepalive", elapsed))
}
