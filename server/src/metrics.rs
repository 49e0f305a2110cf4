//! The member's metrics, in Prometheus' text format at `GET /metrics`, under etcd's names.
//!
//! Every value is an atomic updated where the thing happens — the driver's loop for the raft and
//! store gauges, the persist path for the disk histograms, a tower layer on the gRPC server for
//! the request counters — and read only when `/metrics` is asked for. Nothing here feeds back
//! into what the member does, so the simulator (which builds this too) stays deterministic.
//!
//! Served, with etcd's meaning unless said otherwise:
//! - `etcd_server_has_leader`, `etcd_server_is_leader` (gauges), `etcd_server_leader_changes_seen_total`;
//! - `etcd_server_proposals_committed_total` / `_applied_total` (gauges: the raft commit and
//!   applied indexes, as etcd sets them), `etcd_server_proposals_pending`,
//!   `etcd_server_proposals_failed_total` (timed out, or dropped for want of a leader);
//! - `etcd_disk_wal_fsync_duration_seconds` (one per group commit that syncs the WAL: writing and
//!   syncing the batch), `etcd_disk_backend_commit_duration_seconds` (detcd has no bbolt: the
//!   durable commit of the state is the snapshot file, so this times snapshot saves), both with
//!   etcd's buckets, 1 ms doubling to 8.192 s;
//! - `etcd_mvcc_db_total_size_in_bytes` (the size the quota counts: `Store::size_bytes`);
//! - `grpc_server_started_total` and `grpc_server_handled_total` as go-grpc-prometheus names them.
//!   `handled` is counted when the response starts: for a unary call that is its end, with its
//!   code; a stream (Watch, LeaseKeepAlive, Snapshot, Observe) is counted as handled only when it
//!   fails at once (a trailers-only answer), not when it ends later.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// etcd's buckets for both disk histograms: `prometheus.ExponentialBuckets(0.001, 2, 14)`.
pub const DISK_BUCKETS_S: [f64; 14] =
    [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/// gRPC status codes counted (0 OK … 16 Unauthenticated), by go-grpc-prometheus' names.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// The RPCs served: (service, method, grpc_type).
pub const GRPC_METHODS: [(&str, &str, &str); 31] = [
    ("etcdserverpb.KV", "Range", "unary"),
    ("etcdserverpb.KV", "Put", "unary"),
    ("etcdserverpb.KV", "DeleteRange", "unary"),
    ("etcdserverpb.KV", "Txn", "unary"),
    ("etcdserverpb.KV", "Compact", "unary"),
    ("etcdserverpb.Watch", "Watch", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseGrant", "unary"),
    ("etcdserverpb.Lease", "LeaseRevoke", "unary"),
    ("etcdserverpb.Lease", "LeaseKeepAlive", "bidi_stream"),
    ("etcdserverpb.Lease", "LeaseTimeToLive", "unary"),
    ("etcdserverpb.Lease", "LeaseLeases", "unary"),
    ("etcdserverpb.Cluster", "MemberAdd", "unary"),
    ("etcdserverpb.Cluster", "MemberRemove", "unary"),
    ("etcdserverpb.Cluster", "MemberUpdate", "unary"),
    ("etcdserverpb.Cluster", "MemberList", "unary"),
    ("etcdserverpb.Cluster", "MemberPromote", "unary"),
    ("etcdserverpb.Maintenance", "Alarm", "unary"),
    ("etcdserverpb.Maintenance", "Status", "unary"),
    ("etcdserverpb.Maintenance", "Defragment", "unary"),
    ("etcdserverpb.Maintenance", "Hash", "unary"),
    ("etcdserverpb.Maintenance", "HashKV", "unary"),
    ("etcdserverpb.Maintenance", "Snapshot", "server_stream"),
    ("etcdserverpb.Maintenance", "MoveLeader", "unary"),
    ("etcdserverpb.Maintenance", "Downgrade", "unary"),
    ("v3lockpb.Lock", "Lock", "unary"),
    ("v3lockpb.Lock", "Unlock", "unary"),
    ("v3electionpb.Election", "Campaign", "unary"),
    ("v3electionpb.Election", "Proclaim", "unary"),
    ("v3electionpb.Election", "Leader", "unary"),
    ("v3electionpb.Election", "Observe", "server_stream"),
    ("v3electionpb.Election", "Resign", "unary"),
];

/// A histogram of durations with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    /// Observations at or below each bound (not cumulative; cumulated when rendered).
    buckets: [AtomicU64; 14],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        if let Some(i) = DISK_BUCKETS_S.iter().position(|&le| seconds <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (le, n) in DISK_BUCKETS_S.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// One member's metrics; shared through the driver's `Handle`.
#[derive(Default)]
pub struct Metrics {
    pub has_leader: AtomicU64,
    pub is_leader: AtomicU64,
    pub leader_changes_seen: AtomicU64,
    pub proposals_committed: AtomicU64,
    pub proposals_applied: AtomicU64,
    pub proposals_pending: AtomicU64,
    pub proposals_failed: AtomicU64,
    pub db_total_size_bytes: AtomicU64,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    grpc_started: [AtomicU64; GRPC_METHODS.len()],
    grpc_handled: [[AtomicU64; GRPC_CODES.len()]; GRPC_METHODS.len()],
}

impl Metrics {
    /// The index in [`GRPC_METHODS`] of a request path `/service/method`.
    pub fn grpc_method(path: &str) -> Option<usize> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        GRPC_METHODS.iter().position(|&(s, m, _)| s == service && m == method)
    }

    pub fn grpc_started(&self, method: usize) {
        self.grpc_started[method].fetch_add(1, Ordering::Relaxed);
    }

    /// `code`: the gRPC status code number (an unknown one counts as Unknown).
    pub fn grpc_handled(&self, method: usize, code: usize) {
        let code = if code < GRPC_CODES.len() { code } else { 2 };
        self.grpc_handled[method][code].fetch_add(1, Ordering::Relaxed);
    }

    /// Everything, in Prometheus' text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let value = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // (name, type, help, value), etcd's wording.
        let scalars: [(&str, &str, &str, &AtomicU64); 8] = [
            (
                "etcd_server_has_leader",
                "gauge",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
                &self.has_leader,
            ),
            (
                "etcd_server_is_leader",
                "gauge",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                &self.is_leader,
            ),
            (
                "etcd_server_leader_changes_seen_total",
                "counter",
                "The number of leader changes seen.",
                &self.leader_changes_seen,
            ),
            (
                "etcd_server_proposals_committed_total",
                "gauge",
                "The total number of consensus proposals committed.",
                &self.proposals_committed,
            ),
            (
                "etcd_server_proposals_applied_total",
                "gauge",
                "The total number of consensus proposals applied.",
                &self.proposals_applied,
            ),
            (
                "etcd_server_proposals_pending",
                "gauge",
                "The current number of pending proposals to commit.",
                &self.proposals_pending,
            ),
            (
                "etcd_server_proposals_failed_total",
                "counter",
                "The total number of failed proposals seen.",
                &self.proposals_failed,
            ),
            (
                "etcd_mvcc_db_total_size_in_bytes",
                "gauge",
                "Total size of the underlying database physically allocated in bytes.",
                &self.db_total_size_bytes,
            ),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}", value(v));
        }
        self.wal_fsync.render(
            &mut out,
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        );
        self.backend_commit.render(
            &mut out,
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
        );
        let _ = writeln!(
            out,
            "# HELP grpc_server_started_total Total number of RPCs started on the server.\n\
             # TYPE grpc_server_started_total counter"
        );
        for (i, (service, method, kind)) in GRPC_METHODS.iter().enumerate() {
            let _ = writeln!(
                out,
                "grpc_server_started_total{{grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"}} {}",
                value(&self.grpc_started[i])
            );
        }
        let _ = writeln!(
            out,
            "# HELP grpc_server_handled_total Total number of RPCs completed on the server, regardless of success or failure.\n\
             # TYPE grpc_server_handled_total counter"
        );
        for (i, (service, method, kind)) in GRPC_METHODS.iter().enumerate() {
            for (code, name) in GRPC_CODES.iter().enumerate() {
                let n = value(&self.grpc_handled[i][code]);
                // Every method's OK line, like go-grpc-prometheus' pre-initialised counters;
                // other codes once seen.
                if n > 0 || code == 0 {
                    let _ = writeln!(
                        out,
                        "grpc_server_handled_total{{grpc_code=\"{name}\",grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{kind}\"}} {n}"
                    );
                }
            }
        }
        out
    }
}

/// Counts gRPC requests by method and status code for [`Metrics`] (the tokio world's client
/// server; the simulator's transport has no tower stack).
#[cfg(not(madsim))]
pub mod grpc_layer {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use super::Metrics;

    #[derive(Clone)]
    pub struct GrpcMetricsLayer(pub Arc<Metrics>);

    impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
        type Service = GrpcMetrics<S>;

        fn layer(&self, inner: S) -> GrpcMetrics<S> {
            GrpcMetrics { inner, metrics: self.0.clone() }
        }
    }

    #[derive(Clone)]
    pub struct GrpcMetrics<S> {
        inner: S,
        metrics: Arc<Metrics>,
    }

    impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
    where
        S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
        S::Future: Send + 'static,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            let method = Metrics::grpc_method(request.uri().path());
            if let Some(m) = method {
                self.metrics.grpc_started(m);
            }
            let metrics = self.metrics.clone();
            let answer = self.inner.call(request);
            Box::pin(async move {
                let response = answer.await?;
                if let Some(m) = method {
                    // A trailers-only answer (an error, or a unary call's status when tonic
                    // sends it so) has the code in its headers; otherwise a unary call's code
                    // comes in the trailers, and tonic sends trailers-only for every error: OK.
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<usize>().ok());
                    let unary = super::GRPC_METHODS[m].2 == "unary";
                    match code {
                        Some(code) => metrics.grpc_handled(m, code),
                        None if unary => metrics.grpc_handled(m, 0),
                        None => {}
                    }
                }
                Ok(response)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_has_etcds_names_and_cumulative_buckets() {
        let m = Metrics::default();
        m.has_leader.store(1, Ordering::Relaxed);
        m.wal_fsync.observe(Duration::from_micros(1_500));
        m.wal_fsync.observe(Duration::from_millis(3));
        m.wal_fsync.observe(Duration::from_secs(20));
        let put = Metrics::grpc_method("/etcdserverpb.KV/Put").expect("a known method");
        m.grpc_started(put);
        m.grpc_handled(put, 8);
        assert_eq!(Metrics::grpc_method("/etcdserverpb.KV/Nope"), None);
        let text = m.render();
        assert!(text.contains("# TYPE etcd_server_has_leader gauge\netcd_server_has_leader 1\n"), "{text}");
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 2\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 2\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_count 3\n"));
        assert!(text.contains(
            "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"
        ));
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"ResourceExhausted\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"));
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 0\n"));
    }
}
