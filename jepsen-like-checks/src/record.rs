//! `detcd-check record`: drives a live etcd v3 cluster with a [`crate::workload`] and returns the
//! history the clients saw.
//!
//! Only for the real tokio runtime (the simulator runs [`crate::workload::run_client`] itself).
//!
//! Before the clients start, the recorder reads the key prefix of the run (by default a fresh one,
//! `detcd-check/<workload>/<unix ms>-<seed>/`) through the first endpoint that answers: it must be
//! empty, and the revision of that read, `R`, becomes time zero of the history's revisions
//! (recorded as revision 1; see "Revisions relative to the start" in [`crate::workload`]). Nobody
//! else may write to the cluster while the recording runs: the etcd model checks every revision.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use detcd_proto::etcdserverpb::kv_client::KvClient;
use detcd_proto::etcdserverpb::RangeRequest;
use tokio::time::Instant;

use crate::history::Operation;
use crate::workload::{run_client, ClientSpec, Recorder, Workload};

/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct RecordOptions {
    pub endpoints: Vec<String>,
    pub workload: Workload,
    pub clients: usize,
    pub duration: Duration,
    /// Seeds every client's choices (client `i` gets a seed derived from it and `i`).
    pub seed: u64,
    pub op_timeout: Duration,
    /// Keys the workload spreads over.
    pub keys: usize,
    /// `None`: a fresh prefix of its own.
    pub key_prefix: Option<String>,
    /// Print a progress line on stderr every second.
    pub progress: bool,
}

/// A recorded run.
#[derive(Clone, Debug)]
pub struct Recording {
    pub ops: Vec<Operation>,
    pub key_prefix: String,
    /// etcd's revision when the clients started (revision 1 of the history).
    pub start_revision: i64,
    pub elapsed: Duration,
}

/// Runs the clients on a tokio runtime of its own and returns what they recorded.
pub fn record(options: &RecordOptions) -> Result<Recording, String> {
    if options.endpoints.is_empty() {
        return Err("no endpoint given".into());
    }
    if options.clients == 0 || options.keys == 0 {
        return Err("--clients and --keys must be at least 1".into());
    }
    if options.workload == Workload::Watch && options.clients < 2 {
        // Even client ids write, odd ids watch.
        return Err("the watch workload needs at least 2 clients (one writes, one watches)".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(record_async(options))
}

async fn record_async(options: &RecordOptions) -> Result<Recording, String> {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let key_prefix = options
        .key_prefix
        .clone()
        .unwrap_or_else(|| format!("detcd-check/{}/{unix_ms}-{}/", options.workload, options.seed));
    let start_revision = empty_prefix_revision(options, &key_prefix).await?;
    let recorder = Recorder::with_revision_base(start_revision - 1);
    let started = Instant::now();
    let stop_at = started + options.duration;
    let clients: Vec<_> = (0..options.clients as u64)
        .map(|id| {
            let spec = ClientSpec {
                id,
                endpoints: options.endpoints.clone(),
                workload: options.workload,
                seed: client_seed(options.seed, id),
                op_timeout: options.op_timeout,
                stop_at,
                keys: options.keys,
                key_prefix: key_prefix.clone(),
            };
            tokio::task::spawn(run_client(spec, recorder.clone()))
        })
        .collect();
    let progress = options.progress.then(|| {
        let recorder = recorder.clone();
        tokio::task::spawn(async move {
            let mut before = 0;
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let now = recorder.len();
                eprintln!(
                    "record: {:.0} s, {now} ops ({:.0}/s)",
                    started.elapsed().as_secs_f64(),
                    (now - before) as f64 / PROGRESS_EVERY.as_secs_f64()
                );
                before = now;
            }
        })
    });
    for client in clients {
        client.await.map_err(|e| format!("a client failed: {e}"))?;
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(Recording { ops: recorder.into_ops(), key_prefix, start_revision, elapsed: started.elapsed() })
}

/// Reads the prefix through the first endpoint that answers: it must hold no key. Returns the
/// revision of that read.
async fn empty_prefix_revision(options: &RecordOptions, key_prefix: &str) -> Result<i64, String> {
    let prefix = bytes::Bytes::from(key_prefix.as_bytes().to_vec());
    let end = crate::workload::prefix_end(key_prefix.as_bytes());
    let mut errors = Vec::new();
    for endpoint in &options.endpoints {
        let url = if endpoint.contains("://") { endpoint.clone() } else { format!("http://{endpoint}") };
        let request =
            RangeRequest { key: prefix.clone(), range_end: end.clone().into(), count_only: true, ..Default::default() };
        let read = tokio::time::timeout(options.op_timeout * 5, async {
            let mut kv = KvClient::connect(url.clone()).await.map_err(|e| e.to_string())?;
            kv.range(request).await.map(|r| r.into_inner()).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match read {
            Ok(r) if r.count > 0 => {
                return Err(format!("the key prefix {key_prefix:?} already holds {} keys: pick another", r.count))
            }
            Ok(r) => return Ok(r.header.map_or(1, |h| h.revision).max(1)),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    Err(format!("no endpoint answered: {}", errors.join("; ")))
}

/// Client `id`'s seed: the run's seed and the id mixed (splitmix64), so that clients differ.
pub fn client_seed(seed: u64, id: u64) -> u64 {
    let mut z = seed.wrapping_add(id.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `10s`, `500ms`, `2m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1000)
    };
    let n: u64 = number.trim().parse().map_err(|_| format!("{text:?} is not a duration (like 10s, 500ms, 2m)"))?;
    Ok(Duration::from_millis(n.saturating_mul(unit_ms)))
}

/// `<workload>-<UTC date and time>.jsonl`, for a history file in the current directory.
pub fn default_history_name(workload: Workload) -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!("{workload}-{year:04}{month:02}{day:02}-{:02}{:02}{:02}.jsonl", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("ten").is_err());
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn clients_get_distinct_seeds() {
        let seeds: std::collections::BTreeSet<u64> = (0..100).map(|id| client_seed(7, id)).collect();
        assert_eq!(seeds.len(), 100);
        assert_ne!(client_seed(7, 0), client_seed(8, 0));
    }
}
