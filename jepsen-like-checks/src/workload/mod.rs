//! Workloads: clients of the etcd v3 gRPC API that record what they saw as a history
//! ([`crate::history`]), for the checkers.
//!
//! The same code runs under the real tokio runtime (`detcd-check record`, against any etcd) and,
//! built with `--cfg madsim`, inside detcd's simulator: `tokio` and `tonic` here are the
//! workspace's madsim-tokio and madsim-tonic. So nothing in here reads the OS clock, starts
//! threads or draws OS randomness: times come from `tokio::time::Instant`, and every random choice
//! from a [`StdRng`] seeded by the caller ([`ClientSpec::seed`]), so that a simulated run replays
//! exactly.
//!
//! A client ([`run_client`]) sends one request at a time, to an endpoint it picks at random,
//! until [`ClientSpec::stop_at`], and records each request with its call and return times on the
//! [`Recorder`]'s clock:
//!
//! - an answer → `ok`, with the output;
//! - an etcd refusal that certainly did not apply (invalid argument, compacted revision, lease not
//!   found, too many requests, …; see [`Failure::classify`]) → `failed`;
//! - a timeout ([`ClientSpec::op_timeout`]), a lost connection or any other error →
//!   `indeterminate`, the error text kept; the client then reconnects, after a backoff.
//!
//! Workloads ([`Workload`]) are small, one file each: [`register`], [`txn`], [`append`],
//! [`watch`], [`lease`]. Every value written is unique (`c{client}-{n}`), which the checkers rely
//! on. All keys live under [`ClientSpec::key_prefix`], so that a run can use a cluster that holds
//! other data, as long as nobody else writes while it runs (the etcd model checks every revision).
//!
//! # Revisions relative to the start
//!
//! The etcd model starts from an empty store at revision 1. A recorder that starts on a cluster
//! at revision `R` (with its key prefix empty) therefore records every revision relative to it:
//! a [`Recorder::with_revision_base`] of `R - 1` subtracts `R - 1` from every non-zero revision
//! field of the operations pushed (`header_revision`, `create_revision`, `mod_revision`,
//! `start_revision`, `compact_revision`, a compare's `mod_revision` / `create_revision`, a range's
//! `revision` — every field of the format whose name ends in `revision`). The clients themselves
//! speak to etcd in its own revisions. The simulator starts fresh clusters and uses base 0.

pub mod append;
mod convert;
pub mod lease;
pub mod register;
pub mod txn;
pub mod watch;

use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::lease_client::LeaseClient;
use detcd_proto::etcdserverpb::watch_client::WatchClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::history::{Operation, Outcome, Request, Response};
use convert::KvCall;

/// What the clients do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Unique puts, ranges and a few deletes on a few keys.
    Register,
    /// Multi-key txns comparing mod revisions and values, with puts and ranges in both branches.
    Txn,
    /// List-append transactions (`list_txn`) for the Elle-style checks.
    Append,
    /// Puts and deletes on a prefix while other clients watch it.
    Watch,
    /// Lease grant, keepalive and revoke, puts attached to leases, ranges.
    Lease,
}

impl Workload {
    pub const ALL: [Workload; 5] =
        [Workload::Register, Workload::Txn, Workload::Append, Workload::Watch, Workload::Lease];
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.to_string() == s)
            .ok_or_else(|| format!("unknown workload {s:?} (expected register, txn, append, watch or lease)"))
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Register => "register",
            Workload::Txn => "txn",
            Workload::Append => "append",
            Workload::Watch => "watch",
            Workload::Lease => "lease",
        })
    }
}

/// The history being recorded, shared by all clients of a run.
///
/// Operations are kept in the order they were pushed, which under madsim is deterministic.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Recorded>>,
}

struct Recorded {
    /// Time 0 of `call_ns` / `return_ns`.
    origin: Instant,
    /// Subtracted from every non-zero revision pushed (see the module docs).
    revision_base: i64,
    ops: Vec<Operation>,
    /// The next `watcher` number to hand out.
    next_watcher: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// Time 0 is now; revisions are recorded as etcd gives them.
    pub fn new() -> Recorder {
        Recorder::with_revision_base(0)
    }

    /// Revisions are recorded minus `revision_base` (see the module docs).
    pub fn with_revision_base(revision_base: i64) -> Recorder {
        let recorded = Recorded { origin: Instant::now(), revision_base, ops: Vec::new(), next_watcher: 1 };
        Recorder { inner: Arc::new(Mutex::new(recorded)) }
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        // A client that panicked holding the lock left the history whole (pushes are atomic).
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn revision_base(&self) -> i64 {
        self.lock().revision_base
    }

    /// Nanoseconds since time 0.
    pub fn now_ns(&self) -> u64 {
        let origin = self.lock().origin;
        u64::try_from(Instant::now().saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Appends an operation (its revisions made relative to the base).
    pub fn push(&self, op: Operation) {
        let mut recorded = self.lock();
        let op = if recorded.revision_base == 0 { op } else { rebase_revisions(op, recorded.revision_base) };
        recorded.ops.push(op);
    }

    pub fn len(&self) -> usize {
        self.lock().ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The operations so far, in the order recorded.
    pub fn ops(&self) -> Vec<Operation> {
        self.lock().ops.clone()
    }

    /// The operations, in the order recorded (without copying when this is the last handle).
    pub fn into_ops(self) -> Vec<Operation> {
        match Arc::try_unwrap(self.inner) {
            Ok(mutex) => mutex.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).ops,
            Err(shared) => Recorder { inner: shared }.ops(),
        }
    }

    /// A `watcher` number unique in this history.
    pub fn new_watcher(&self) -> u64 {
        let mut recorded = self.lock();
        recorded.next_watcher += 1;
        recorded.next_watcher - 1
    }
}

/// Subtracts `base` from every non-zero field named `…revision` (see the module docs). Done on the
/// JSON form so that no revision field of the format can be forgotten.
fn rebase_revisions(op: Operation, base: i64) -> Operation {
    fn walk(value: &mut serde_json::Value, base: i64) {
        match value {
            serde_json::Value::Object(fields) => {
                for (name, field) in fields.iter_mut() {
                    match field.as_i64() {
                        Some(revision) if name.ends_with("revision") && revision != 0 => {
                            *field = serde_json::Value::from(revision - base);
                        }
                        _ => walk(field, base),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| walk(item, base)),
            _ => {}
        }
    }
    let mut json = match serde_json::to_value(&op) {
        Ok(json) => json,
        Err(_) => return op,
    };
    walk(&mut json, base);
    serde_json::from_value(json).unwrap_or(op)
}

/// One client of a run.
#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// The `client` of its operations; unique in the run. Also picks its role in some workloads
    /// (in `watch`, odd ids watch and even ids write).
    pub id: u64,
    /// gRPC endpoints (`host:port` or `http://host:port`); one is picked at random per connection.
    pub endpoints: Vec<String>,
    pub workload: Workload,
    /// This client's own seed (give each client a different one).
    pub seed: u64,
    /// How long one request may take before it is recorded as indeterminate.
    pub op_timeout: Duration,
    /// No request is sent after this.
    pub stop_at: Instant,
    /// How many keys the workload spreads over (at least 1).
    pub keys: usize,
    /// Every key the workload touches starts with it; it should hold no key when the run starts.
    pub key_prefix: String,
}

/// Runs one client until `spec.stop_at`, recording on `recorder`.
pub async fn run_client(spec: ClientSpec, recorder: Recorder) {
    let workload = spec.workload;
    let mut client = Client::new(spec, recorder);
    match workload {
        Workload::Register => register::run(&mut client).await,
        Workload::Txn => txn::run(&mut client).await,
        Workload::Append => append::run(&mut client).await,
        Workload::Watch => watch::run(&mut client).await,
        Workload::Lease => lease::run(&mut client).await,
    }
    tracing::debug!(client = client.spec.id, "client done");
}

/// The end of the range of every key starting with `prefix` (etcd's `--prefix`): the prefix with
/// its last byte below 0xff incremented (bytes 0xff after it dropped); `"\0"`, every key, if none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Room for each client's unique numbers (a client writes far fewer values in a run).
const NUMBERS_PER_CLIENT: u64 = 1_000_000_000;

/// Reconnection backoff: starts here, doubles per failed attempt, up to the max.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The gRPC clients of one connection.
pub(crate) struct Conn {
    pub(crate) kv: KvClient<Channel>,
    pub(crate) watch: WatchClient<Channel>,
    pub(crate) lease: LeaseClient<Channel>,
}

/// What every workload's client has: its spec, its generator, its connection.
pub(crate) struct Client {
    pub(crate) spec: ClientSpec,
    pub(crate) rng: StdRng,
    pub(crate) recorder: Recorder,
    conn: Option<Conn>,
    /// The last request or dial failed: back off before dialling again.
    broke: bool,
    backoff: Duration,
    /// Values written so far (makes values unique).
    written: u64,
}

/// How a request ended, when it did not answer.
/// etcd's `ErrGRPCNoLeader` message.
const NO_LEADER: &str = "etcdserver: no leader";
/// etcd's `ErrGRPCNotSupportedForLearner` message: a learner's interceptor refuses the request
/// before any handler sees it.
const NOT_FOR_LEARNER: &str = "etcdserver: rpc not supported for learner";
/// etcd's `ErrGRPCUnhealthy` message: etcd refuses a membership change that would cost the
/// quorum before proposing it; detcd answers it when it cannot even reach the leader to forward
/// a request to.
const UNHEALTHY: &str = "etcdserver: unhealthy cluster";

/// Whether an error answer certainly left nothing applied (as the workloads classify their own
/// requests' errors): for callers that record requests of their own (the simulator's compactor).
pub fn certainly_refused(status: &tonic::Status) -> bool {
    matches!(Failure::classify(status), Failure::Refused(_))
}

/// Whether the request failed because no connection could be made: it never left the client.
fn never_connected(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().to_ascii_lowercase().contains("connection refused")
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It certainly did not take effect.
    Refused(String),
    /// It may or may not have taken effect.
    Unknown(String),
}

impl Failure {
    /// etcd's refusals that are decided before anything is applied are `Refused`; everything else
    /// (unavailable, timeouts, "leader changed", internal errors, lost connections) may hide an
    /// applied request.
    ///
    /// "etcdserver: no leader" is Unavailable but a refusal too: etcd answers it before a
    /// request reaches raft (no leader known), and detcd also when raft drops the proposal
    /// unappended. Taking it for indeterminate costs the linearizability search dearly: under
    /// partitions most operations end that way. "etcdserver: rpc not supported for learner"
    /// likewise: the learner refuses the request on arrival; and "etcdserver: unhealthy
    /// cluster" (see [`UNHEALTHY`]).
    ///
    /// A connection that was refused never carried the request: no server saw it. (A reset
    /// connection, or a "transport error", may have carried it first.)
    pub(crate) fn classify(status: &tonic::Status) -> Failure {
        use tonic::Code;
        let text = format!("{:?}: {}", status.code(), status.message());
        let refused_by_etcd = [NO_LEADER, NOT_FOR_LEARNER, UNHEALTHY].contains(&status.message());
        if status.code() == Code::Unavailable && (refused_by_etcd || never_connected(status)) {
            return Failure::Refused(text);
        }
        match status.code() {
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::ResourceExhausted
            | Code::Unimplemented => Failure::Refused(text),
            _ => Failure::Unknown(text),
        }
    }

    pub(crate) fn timed_out(timeout: Duration) -> Failure {
        Failure::Unknown(format!("no answer within {} ms", timeout.as_millis()))
    }
}

impl Client {
    fn new(spec: ClientSpec, recorder: Recorder) -> Client {
        let rng = StdRng::seed_from_u64(spec.seed);
        Client { spec, rng, recorder, conn: None, broke: false, backoff: BACKOFF_MIN, written: 0 }
    }

    pub(crate) fn running(&self) -> bool {
        Instant::now() < self.spec.stop_at
    }

    /// A value never written before in this run: `c{client}-{n}`.
    pub(crate) fn unique_value(&mut self) -> String {
        self.written += 1;
        format!("c{}-{}", self.spec.id, self.written)
    }

    /// A number never appended before in this run: `client * 10^9 + n` (readable in a history:
    /// 3000000017 is client 3's 17th value).
    pub(crate) fn unique_number(&mut self) -> u64 {
        self.written += 1;
        self.spec.id.saturating_mul(NUMBERS_PER_CLIENT) + self.written % NUMBERS_PER_CLIENT
    }

    /// `{prefix}{name}{i}` for a random `i` below `spec.keys`.
    pub(crate) fn random_key(&mut self, name: &str) -> String {
        let i = self.rng.gen_range(0..self.spec.keys.max(1));
        self.key(name, i)
    }

    pub(crate) fn key(&self, name: &str, i: usize) -> String {
        format!("{}{name}{i}", self.spec.key_prefix)
    }

    /// The connection, dialling a random endpoint if there is none (after a backoff when the
    /// last one broke). `None` only when the run is over (or there is no endpoint).
    pub(crate) async fn conn(&mut self) -> Option<&mut Conn> {
        while self.conn.is_none() && self.running() && !self.spec.endpoints.is_empty() {
            if self.broke {
                self.pause().await;
                if !self.running() {
                    break;
                }
            }
            self.dial().await;
        }
        self.conn.as_mut()
    }

    /// The connection, or one attempt to dial, without backoff and even after the run: for
    /// clean-ups after [`ClientSpec::stop_at`].
    pub(crate) async fn conn_now(&mut self) -> Option<&mut Conn> {
        if self.conn.is_none() && !self.spec.endpoints.is_empty() {
            self.dial().await;
        }
        self.conn.as_mut()
    }

    async fn dial(&mut self) {
        let endpoint = self.spec.endpoints[self.rng.gen_range(0..self.spec.endpoints.len())].clone();
        let url = if endpoint.contains("://") { endpoint } else { format!("http://{endpoint}") };
        let dialled = match Endpoint::from_shared(url.clone()) {
            Ok(e) => tokio::time::timeout(self.spec.op_timeout, e.connect_timeout(self.spec.op_timeout).connect())
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        match dialled {
            Ok(channel) => {
                self.conn = Some(Conn {
                    kv: KvClient::new(channel.clone()),
                    watch: WatchClient::new(channel.clone()),
                    lease: LeaseClient::new(channel),
                });
            }
            Err(e) => {
                tracing::debug!(client = self.spec.id, %url, error = %e, "cannot connect");
                self.broke = true;
            }
        }
    }

    /// After an error that may mean the connection or its member is gone: dial again (after a
    /// backoff) before the next request.
    pub(crate) fn broken(&mut self) {
        self.conn = None;
        self.broke = true;
    }

    async fn pause(&mut self) {
        let wait = self.backoff.min(self.spec.stop_at.saturating_duration_since(Instant::now()));
        tokio::time::sleep(wait).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn answered(&mut self) {
        self.backoff = BACKOFF_MIN;
        self.broke = false;
    }

    /// Records one operation that ran from `call_ns` to now.
    pub(crate) fn record(&self, call_ns: u64, op: Request, result: Result<Response, Failure>) {
        let return_ns = self.recorder.now_ns();
        let (outcome, output, error) = match result {
            Ok(output) => (Outcome::Ok, Some(output), None),
            Err(Failure::Refused(e)) => (Outcome::Failed, None, Some(e)),
            Err(Failure::Unknown(e)) => (Outcome::Indeterminate, None, Some(e)),
        };
        self.recorder.push(Operation { client: self.spec.id, call_ns, return_ns, op, outcome, output, error });
    }

    /// Sends a KV request (range, put, delete or txn) and returns what to record.
    pub(crate) async fn kv(&mut self, request: &Request) -> Result<Response, Failure> {
        let call = convert::kv_call(request).ok_or_else(|| Failure::Refused(format!("not a KV request: {request}")))?;
        let timeout = self.spec.op_timeout;
        let Some(conn) = self.conn().await else {
            return Err(Failure::Refused("the run ended before a connection was made (nothing was sent)".into()));
        };
        let kv = &mut conn.kv;
        let answer = tokio::time::timeout(timeout, async {
            match call {
                KvCall::Range(r) => kv.range(r).await.map(|a| Ok(convert::range_response(a.get_ref()))),
                KvCall::Put(p) => kv.put(p).await.map(|a| Ok(convert::put_response(a.get_ref()))),
                KvCall::Delete(d) => kv.delete_range(d).await.map(|a| Ok(convert::delete_response(a.get_ref()))),
                KvCall::Txn(t) => kv.txn(t).await.map(|a| convert::txn_response(a.get_ref())),
            }
        })
        .await;
        self.settle(answer, timeout).and_then(|converted| converted.map_err(Failure::Unknown))
    }

    /// Turns a timed gRPC answer into a result, dropping the connection after an error that may
    /// mean it is broken.
    pub(crate) fn settle<T>(
        &mut self,
        answer: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) -> Result<T, Failure> {
        match answer {
            Ok(Ok(t)) => {
                self.answered();
                Ok(t)
            }
            Ok(Err(status)) => {
                let failure = Failure::classify(&status);
                if matches!(failure, Failure::Unknown(_)) || never_connected(&status) {
                    self.broken();
                }
                Err(failure)
            }
            Err(_) => {
                self.broken();
                Err(Failure::timed_out(timeout))
            }
        }
    }

    /// Sends a KV request once connected and records it; `None` if the run ended first.
    pub(crate) async fn kv_recorded(&mut self, request: Request) -> Option<Result<Response, Failure>> {
        self.conn().await?;
        let call_ns = self.recorder.now_ns();
        let result = self.kv(&request).await;
        self.record(call_ns, request, result.clone());
        Some(result)
    }
}

/// A gRPC request stream fed by a channel: the stream stays open while the sender lives, so that
/// requests can follow one another (watch progress requests) and the server never sees the end
/// of the stream before it answered (a keepalive).
pub(crate) struct RequestStream<T>(pub(crate) mpsc::Receiver<T>);

impl<T> tonic::codegen::tokio_stream::Stream for RequestStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse_line;

    #[test]
    fn workload_names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(w.to_string().parse::<Workload>(), Ok(w));
        }
        assert!("bank".parse::<Workload>().unwrap_err().contains("unknown workload"));
    }

    #[test]
    fn prefix_ranges_end_past_the_prefix() {
        assert_eq!(prefix_end(b"a/b/"), b"a/b0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    /// Every revision field moves by the base, zeros (absent, "latest", "now") stay, the rest of
    /// the line does not change.
    #[test]
    fn revisions_are_recorded_relative_to_the_start() {
        let at_etcd = parse_line(
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"txn","compare":[{"key":"a","result":"equal","target":{"mod_revision":107}},{"key":"b","result":"equal","target":{"create_revision":0}}],"success":[{"type":"range","key":"a","revision":105}],"failure":[]},"outcome":"ok","output":{"type":"txn","header_revision":110,"succeeded":true,"responses":[{"type":"range","kvs":[{"key":"a","value":"7","create_revision":101,"mod_revision":105,"version":2,"lease":100}]}]}}"#,
        )
        .unwrap();
        let recorder = Recorder::with_revision_base(100);
        recorder.push(at_etcd);
        let watch = parse_line(
            r#"{"client":2,"call_ns":3,"return_ns":3,"op":{"type":"watch_response","watcher":1},"outcome":"ok","output":{"type":"watch_response","header_revision":120,"watch_id":0,"events":[],"compact_revision":104,"canceled":true}}"#,
        )
        .unwrap();
        recorder.push(watch);
        let lines: Vec<String> = recorder.into_ops().iter().map(Operation::to_json_line).collect();
        assert_eq!(
            lines[0],
            r#"{"client":1,"call_ns":1,"return_ns":2,"op":{"type":"txn","compare":[{"key":"a","result":"equal","target":{"mod_revision":7}},{"key":"b","result":"equal","target":{"create_revision":0}}],"success":[{"type":"range","key":"a","revision":5}],"failure":[]},"outcome":"ok","output":{"type":"txn","header_revision":10,"succeeded":true,"responses":[{"type":"range","kvs":[{"key":"a","value":"7","create_revision":1,"mod_revision":5,"version":2,"lease":100}]}]}}"#
        );
        assert_eq!(
            lines[1],
            r#"{"client":2,"call_ns":3,"return_ns":3,"op":{"type":"watch_response","watcher":1},"outcome":"ok","output":{"type":"watch_response","header_revision":20,"watch_id":0,"events":[],"compact_revision":4,"canceled":true}}"#
        );
    }

    #[test]
    fn refusals_fail_and_the_rest_is_indeterminate() {
        let refused = tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        assert!(matches!(Failure::classify(&refused), Failure::Refused(e) if e.contains("compacted")));
        let lost = tonic::Status::unavailable("etcdserver: leader changed");
        assert!(matches!(Failure::classify(&lost), Failure::Unknown(e) if e.contains("leader changed")));
        let no_leader = tonic::Status::unavailable("etcdserver: no leader");
        assert!(matches!(Failure::classify(&no_leader), Failure::Refused(e) if e.contains("no leader")));
        let learner = tonic::Status::unavailable("etcdserver: rpc not supported for learner");
        assert!(matches!(Failure::classify(&learner), Failure::Refused(e) if e.contains("learner")));
        let unhealthy = tonic::Status::unavailable("etcdserver: unhealthy cluster");
        assert!(matches!(Failure::classify(&unhealthy), Failure::Refused(_)));
        let never_sent = tonic::Status::unavailable("connection refused");
        assert!(matches!(Failure::classify(&never_sent), Failure::Refused(_)));
        let real_client = tonic::Status::unavailable("tcp connect error: Connection refused (os error 111)");
        assert!(matches!(Failure::classify(&real_client), Failure::Refused(_)));
        let other_unavailable = tonic::Status::unavailable("connection reset");
        assert!(matches!(Failure::classify(&other_unavailable), Failure::Unknown(_)));
        let transport = tonic::Status::unavailable("transport error");
        assert!(matches!(Failure::classify(&transport), Failure::Unknown(_)));
    }
}
