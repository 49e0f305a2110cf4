//! `detcd-bench`: load against any etcd v3 gRPC endpoint (detcd or etcd), with etcd
//! `benchmark`'s flags where they apply. A measurement tool: it asserts nothing about time.
//!
//! Clients are tasks; client `c` uses connection `c % conns`, connection `i` goes to endpoint
//! `i % endpoints`. Unary workloads hand out request numbers from one shared counter, so
//! `--total` is exact however the clients are scheduled.

pub mod args;
pub mod report;
mod workloads;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};

pub use args::{Args, USAGE};
pub use report::Report;

/// Flags every command shares.
#[derive(Debug, Clone)]
pub struct Global {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub clients: usize,
    /// Requests in all; `None` when only `--duration` bounds the run.
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    /// Requests per second in all, when bounded.
    pub rate: Option<u64>,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub seed: u64,
    pub json: bool,
    pub progress: bool,
    pub rss_pids: Vec<u32>,
}

impl Global {
    pub fn from_args(args: &Args) -> Result<Global, String> {
        let endpoints: Vec<String> = args
            .string("endpoints", "127.0.0.1:2379")
            .split(',')
            .filter(|e| !e.is_empty())
            .map(|e| if e.contains("://") { e.to_string() } else { format!("http://{e}") })
            .collect();
        if endpoints.is_empty() {
            return Err("--endpoints names no endpoint".into());
        }
        let duration = if args.has("duration") { Some(args.duration("duration", Duration::ZERO)?) } else { None };
        // etcd's default total is 10,000; a --duration alone lifts it.
        let total = if args.has("total") || duration.is_none() { Some(args.number("total", 10_000)?) } else { None };
        let rate = match args.number("rate", 0)? {
            0 => None,
            n => Some(n),
        };
        let output = args.string("output", "text");
        let json = match output.as_str() {
            "text" => false,
            "json" => true,
            other => return Err(format!("--output: expected text or json, got {other:?}")),
        };
        let progress = match args.string("progress", "auto").as_str() {
            "auto" => std::io::IsTerminal::is_terminal(&std::io::stderr()),
            "always" => true,
            "never" => false,
            other => return Err(format!("--progress: expected auto, always or never, got {other:?}")),
        };
        let rss_pids = args
            .string("rss-pids", "")
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|_| format!("--rss-pids: not a process id: {p:?}")))
            .collect::<Result<_, _>>()?;
        Ok(Global {
            endpoints,
            conns: args.positive("conns", 1)? as usize,
            clients: args.positive("clients", 1)? as usize,
            total,
            duration,
            rate,
            dial_timeout: args.duration("dial-timeout", Duration::from_secs(5))?,
            request_timeout: args.duration("request-timeout", Duration::from_secs(30))?,
            seed: args.number("seed", 1)?,
            json,
            progress,
            rss_pids,
        })
    }

    /// One channel per connection, connection `i` to endpoint `i % endpoints`.
    pub async fn connect(&self) -> Result<Vec<Channel>, String> {
        let mut channels = Vec::with_capacity(self.conns);
        for i in 0..self.conns {
            let url = &self.endpoints[i % self.endpoints.len()];
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| format!("endpoint {url}: {e}"))?
                .connect_timeout(self.dial_timeout)
                .tcp_nodelay(true);
            channels.push(endpoint.connect().await.map_err(|e| format!("connect to {url}: {e}"))?);
        }
        Ok(channels)
    }
}

/// Runs the command `args` names and returns its report.
pub async fn run(args: &Args) -> Result<Report, String> {
    let global = Global::from_args(args)?;
    let report = match args.command.as_str() {
        "put" => workloads::put(&global, args).await?,
        "range" => workloads::range(&global, args).await?,
        "txn-put" => workloads::txn_put(&global, args).await?,
        "watch" => workloads::watch(&global, args).await?,
        "watch-latency" => workloads::watch_latency(&global, args).await?,
        "lease-keepalive" => workloads::lease_keepalive(&global, args).await?,
        "" => return Err("no command given".into()),
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(report)
}

/// A key of exactly `key_size` bytes naming key number `n`: zero-padded lower-case hex, so keys
/// sort in number order and are readable in etcdctl.
pub fn key_bytes(n: u64, key_size: usize) -> Bytes {
    Bytes::from(format!("{n:0key_size$x}"))
}

/// Checks that `key_size` hex digits can name `key_space` distinct keys.
pub fn check_key_space(key_size: u64, key_space: u64) -> Result<(), String> {
    let fits = key_size >= 16 || 16u64.pow(key_size as u32) >= key_space;
    if fits {
        Ok(())
    } else {
        Err(format!("--key-size {key_size} cannot name --key-space-size {key_space} distinct keys (hex digits)"))
    }
}

/// splitmix64: the keys' randomness, seeded by `--seed` (one stream per client), so two runs
/// against two servers put the same keys.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64, stream: u64) -> Random {
        Random(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for key choice (modulo bias is below 2^-40 for n < 2^24).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Paces request `i` of a run bounded by a rate: it may start `i / rate` seconds after the start.
#[derive(Clone, Copy)]
pub struct Pacer {
    start: Instant,
    rate_per_s: Option<u64>,
}

impl Pacer {
    pub fn new(start: Instant, rate_per_s: Option<u64>) -> Pacer {
        Pacer { start, rate_per_s }
    }

    pub async fn wait(&self, i: u64) {
        if let Some(rate) = self.rate_per_s {
            let at = self.start + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// The progress line on stderr: done/total and the rate over the last second, once a second,
/// until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    printed: Arc<AtomicBool>,
}

impl Progress {
    pub fn start(enabled: bool, what: &'static str, done: Arc<AtomicU64>, total: Option<u64>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let printed = Arc::new(AtomicBool::new(false));
        if enabled {
            let (stop, printed) = (stop.clone(), printed.clone());
            tokio::task::spawn(async move {
                let mut last = 0u64;
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = done.load(Ordering::Relaxed);
                    let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                    eprint!("\r{what}: {now}{of}, {}/s   ", now - last);
                    printed.store(true, Ordering::Relaxed);
                    last = now;
                }
            });
        }
        Progress { stop, printed }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.printed.load(Ordering::Relaxed) {
            eprintln!();
        }
    }
}

/// A server's resident memory in KiB, from `VmRSS` in /proc/PID/status.
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/status has no VmRSS line"))
}

/// The message an error is counted under: the gRPC message as etcd sends it, or the code when
/// there is none (a transport failure).
pub fn error_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_hex() {
        assert_eq!(key_bytes(255, 8), Bytes::from_static(b"000000ff"));
        assert!(check_key_space(2, 256).is_ok());
        assert!(check_key_space(2, 257).is_err());
        assert!(check_key_space(16, u64::MAX).is_ok());
    }

    #[test]
    fn random_streams_differ_and_repeat() {
        let draw = |seed, stream| {
            let mut r = Random::new(seed, stream);
            (0..4).map(|_| r.below(1000)).collect::<Vec<_>>()
        };
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
    }

    #[test]
    fn global_defaults_and_duration() {
        let args = Args::parse(["put".to_string()]).unwrap();
        let g = Global::from_args(&args).unwrap();
        assert_eq!((g.total, g.duration, g.clients, g.conns), (Some(10_000), None, 1, 1));
        assert_eq!(g.endpoints, vec!["http://127.0.0.1:2379"]);
        let args = Args::parse("put --duration 3s --endpoints a:1,b:2".split(' ').map(String::from)).unwrap();
        let g = Global::from_args(&args).unwrap();
        assert_eq!((g.total, g.duration), (None, Some(Duration::from_secs(3))));
        assert_eq!(g.endpoints, vec!["http://a:1", "http://b:2"]);
    }
}
