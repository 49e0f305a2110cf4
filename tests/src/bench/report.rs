//! What a run measured and how it is printed: etcd benchmark's summary, response-time histogram
//! and latency distribution as text, or one JSON object for scripts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

/// Every latency sample is kept (4 bytes each: 1,000,000 requests cost 4 MB), so percentiles are
/// exact rather than bucketed.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u32>,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        // u32 microseconds hold 71 minutes: far beyond any request timeout this tool allows.
        self.micros.push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    fn sorted(&self) -> Vec<u32> {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        sorted
    }
}

/// The value at quantile `q` (0..=1) of sorted samples (nearest rank).
fn quantile_us(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// etcd's report: ten equal-width buckets from the fastest to the slowest sample; each bucket
/// is named by its upper bound and counts the samples at most that bound (and above the previous).
fn buckets(sorted: &[u32]) -> Vec<(f64, u64)> {
    let (Some(&fastest), Some(&slowest)) = (sorted.first(), sorted.last()) else {
        return Vec::new();
    };
    const BUCKETS: usize = 10;
    let width = f64::from(slowest - fastest) / BUCKETS as f64;
    let bounds: Vec<f64> = (0..=BUCKETS).map(|i| f64::from(fastest) + width * i as f64).collect();
    let mut counts = vec![0u64; bounds.len()];
    let mut b = 0;
    for &s in sorted {
        while b < bounds.len() - 1 && f64::from(s) > bounds[b] {
            b += 1;
        }
        counts[b] += 1;
    }
    bounds.into_iter().zip(counts).collect()
}

/// Latency percentiles printed and reported.
const PERCENTILES: &[(f64, &str)] = &[
    (0.10, "10"),
    (0.25, "25"),
    (0.50, "50"),
    (0.75, "75"),
    (0.90, "90"),
    (0.95, "95"),
    (0.99, "99"),
    (0.999, "99.9"),
];

/// The result of one workload.
#[derive(Debug, Default)]
pub struct Report {
    /// The command, e.g. `put`.
    pub workload: String,
    /// Requests answered without error.
    pub ok: u64,
    /// Failed requests by error message.
    pub errors: BTreeMap<String, u64>,
    /// Wall-clock time of the measured phase.
    pub elapsed: Duration,
    /// Per-request latencies (for watch-latency: put-to-event latencies, one per watcher).
    pub latencies: Latencies,
    /// What the headline rate counts ("requests", or "events" for the watch workloads).
    pub unit: &'static str,
    /// The headline count, of `unit`s (requests ok, or events delivered).
    pub count: u64,
    /// Workload-specific figures, printed as `key: value` lines and put in the JSON as they are.
    pub extra: Vec<(String, Value)>,
}

impl Report {
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn count_error(&mut self, message: String, n: u64) {
        *self.errors.entry(message).or_default() += n;
    }

    pub fn rate_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }

    pub fn json(&self) -> Value {
        let sorted = self.latencies.sorted();
        let ms = |us: u32| f64::from(us) / 1000.0;
        let mean_ms = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().map(|&u| f64::from(u)).sum::<f64>() / sorted.len() as f64 / 1000.0
        };
        let percentiles: serde_json::Map<String, Value> =
            PERCENTILES.iter().map(|(q, name)| (format!("p{name}"), json!(ms(quantile_us(&sorted, *q))))).collect();
        let mut out = json!({
            "workload": self.workload,
            "ok": self.ok,
            "errors_total": self.error_total(),
            "errors": self.errors,
            "duration_s": self.elapsed.as_secs_f64(),
            "unit": self.unit,
            "count": self.count,
            "per_s": self.rate_per_s(),
            "latency_ms": {
                "samples": sorted.len(),
                "min": ms(sorted.first().copied().unwrap_or(0)),
                "mean": mean_ms,
                "max": ms(sorted.last().copied().unwrap_or(0)),
                "percentiles": percentiles,
                "buckets": buckets(&sorted).iter().map(|(le, n)| json!({"le_ms": le / 1000.0, "count": n})).collect::<Vec<_>>(),
            },
        });
        let object = out.as_object_mut().expect("a JSON object");
        for (k, v) in &self.extra {
            object.insert(k.clone(), v.clone());
        }
        out
    }

    pub fn text(&self) -> String {
        use std::fmt::Write;
        let sorted = self.latencies.sorted();
        let secs = |us: u32| f64::from(us) / 1e6;
        let mut out = String::new();
        let _ = writeln!(out, "Summary ({}):", self.workload);
        let _ = writeln!(out, "  Total:\t{} {} in {:.4} secs.", self.count, self.unit, self.elapsed.as_secs_f64());
        if !sorted.is_empty() {
            let mean = sorted.iter().map(|&u| f64::from(u)).sum::<f64>() / sorted.len() as f64 / 1e6;
            let _ = writeln!(out, "  Slowest:\t{:.4} secs.", secs(*sorted.last().expect("not empty")));
            let _ = writeln!(out, "  Fastest:\t{:.4} secs.", secs(sorted[0]));
            let _ = writeln!(out, "  Average:\t{mean:.4} secs.");
        }
        let _ = writeln!(out, "  {}/sec:\t{:.4}", capitalised(self.unit), self.rate_per_s());
        for (k, v) in &self.extra {
            let _ = writeln!(out, "  {k}:\t{v}");
        }
        if !sorted.is_empty() {
            let _ = writeln!(out, "\nResponse time histogram:");
            let b = buckets(&sorted);
            let most = b.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
            for (le_us, n) in &b {
                // etcd draws bars of up to 40 marks.
                let bar = "∎".repeat((n * 40 / most) as usize);
                let _ = writeln!(out, "  {:.4} [{n}]\t|{bar}", le_us / 1e6);
            }
            let _ = writeln!(out, "\nLatency distribution:");
            for (q, name) in PERCENTILES {
                let _ = writeln!(out, "  {name}% in {:.4} secs.", secs(quantile_us(&sorted, *q)));
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nErrors ({} in all):", self.error_total());
            for (message, n) in &self.errors {
                let _ = writeln!(out, "  [{n}]\t{message}");
            }
        }
        out
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(micros: &[u32]) -> Latencies {
        Latencies { micros: micros.to_vec() }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile_us(&sorted, 0.5), 50);
        assert_eq!(quantile_us(&sorted, 0.99), 99);
        assert_eq!(quantile_us(&sorted, 0.999), 100);
        assert_eq!(quantile_us(&[7], 0.1), 7);
        assert_eq!(quantile_us(&[], 0.5), 0);
    }

    #[test]
    fn buckets_cover_every_sample_once() {
        let sorted: Vec<u32> = vec![100, 100, 150, 200, 1000, 1100];
        let b = buckets(&sorted);
        assert_eq!(b.len(), 11);
        assert_eq!(b.iter().map(|(_, n)| n).sum::<u64>(), 6);
        assert_eq!(b[0], (100.0, 2), "the fastest samples fill the first bucket");
        assert_eq!(b[10], (1100.0, 1));
        assert_eq!(buckets(&[5, 5]), vec![(5.0, 2); 1].into_iter().chain(vec![(5.0, 0); 10]).collect::<Vec<_>>());
    }

    #[test]
    fn json_names_counts_errors_and_percentiles() {
        let mut report = Report {
            workload: "put".into(),
            ok: 4,
            count: 4,
            unit: "requests",
            elapsed: Duration::from_secs(2),
            latencies: latencies(&[1000, 2000, 3000, 4000]),
            ..Default::default()
        };
        report.count_error("etcdserver: request timed out".into(), 2);
        let j = report.json();
        assert_eq!(j["ok"], 4);
        assert_eq!(j["errors_total"], 2);
        assert_eq!(j["errors"]["etcdserver: request timed out"], 2);
        assert_eq!(j["per_s"], 2.0);
        assert_eq!(j["latency_ms"]["percentiles"]["p50"], 2.0);
        assert_eq!(j["latency_ms"]["max"], 4.0);
        let text = report.text();
        assert!(text.contains("Requests/sec:\t2.0000"), "{text}");
        assert!(text.contains("[2]\tetcdserver: request timed out"), "{text}");
    }
}
