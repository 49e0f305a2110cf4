//! The member's clock seam: the engine's `Instant` from the runtime's monotonic clock.
//!
//! In production that is the OS monotonic clock (through tokio), unskewed. Under
//! `--cfg madsim` the runtime's clock is the simulator's, shared by every member, so the
//! simulator gives each member its own view of it: an offset, a drift (parts per million) and
//! forward jumps (a paused VM or process wakes up to a clock that moved on) — all drawn from the
//! run's seed. Clones share the jumps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use detcd_engine::time::{Duration, Instant};

/// Converts between the runtime's instants and this member's engine instants.
#[derive(Debug, Clone)]
pub struct Clock {
    origin: tokio::time::Instant,
    offset_ns: u64,
    /// How much faster (positive) or slower this member's clock runs, in parts per million.
    drift_ppm: i64,
    jumped_ns: Arc<AtomicU64>,
}

impl Clock {
    /// The runtime's clock as it is (production).
    pub fn start() -> Clock {
        Clock::skewed(Duration::ZERO, 0, Arc::default())
    }

    /// A clock that starts `offset` ahead, runs `drift_ppm` fast (negative: slow), and has
    /// jumped forward by what `jumps` holds, in nanoseconds (the simulator keeps that counter,
    /// across restarts of the member).
    pub fn skewed(offset: Duration, drift_ppm: i64, jumps: Arc<AtomicU64>) -> Clock {
        assert!(drift_ppm.abs() < 100_000, "a drift of {drift_ppm} ppm is not a clock");
        Clock {
            origin: tokio::time::Instant::now(),
            offset_ns: u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX / 2),
            drift_ppm,
            jumped_ns: jumps,
        }
    }

    /// Moves this clock (and its clones) forward at once by `by`.
    pub fn jump(&self, by: Duration) {
        self.jumped_ns.fetch_add(u64::try_from(by.as_nanos()).unwrap_or(0), Ordering::Relaxed);
    }

    pub fn drift_ppm(&self) -> i64 {
        self.drift_ppm
    }

    pub fn now(&self) -> Instant {
        let local_ns = drifted(self.origin.elapsed().as_nanos() as i128, self.drift_ppm);
        let total = local_ns + self.offset_ns as i128 + self.jumped_ns.load(Ordering::Relaxed) as i128;
        Instant::from_nanos(total.clamp(0, u64::MAX as i128) as u64)
    }

    /// The runtime instant at which this clock shows `at`; "never" becomes a day from now.
    ///
    /// Rounded up: at the instant returned, [`Clock::now`] shows `at` or later. Rounded down, a
    /// drifting clock showed `at` minus a nanosecond there, the node's timeout had not come, and
    /// the driver woke at that same instant forever (simulated time stood still: seed 27, 3
    /// members). With `now`'s rounding toward zero, `r + r*d/1e6 >= L` for the rounded-up `r`
    /// gives `now >= at` for either sign of the drift `d`.
    pub fn runtime_instant(&self, at: Instant) -> tokio::time::Instant {
        let latest = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let local_ns = at.as_nanos() as i128 - self.offset_ns as i128 - self.jumped_ns.load(Ordering::Relaxed) as i128;
        let real_ns = undrifted(local_ns.max(0), self.drift_ppm).clamp(0, u64::MAX as i128);
        self.origin.checked_add(Duration::from_nanos(real_ns as u64)).map_or(latest, |t| t.min(latest))
    }
}

/// Nanoseconds a clock running `drift_ppm` fast shows after `real_ns` of real time.
fn drifted(real_ns: i128, drift_ppm: i64) -> i128 {
    real_ns + real_ns * drift_ppm as i128 / 1_000_000
}

/// A real time at which that clock shows at least `local_ns` (not negative): the exact
/// quotient, rounded up.
fn undrifted(local_ns: i128, drift_ppm: i64) -> i128 {
    let rate = 1_000_000 + drift_ppm as i128;
    (local_ns * 1_000_000 + rate - 1) / rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drifting_clock_shows_the_deadline_at_the_runtime_instant_computed_for_it() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let drift_ppm = (next() % 2_001) as i64 - 1_000;
            let local_ns = (next() % 200_000_000_000) as i128;
            let real_ns = undrifted(local_ns, drift_ppm);
            assert!(drifted(real_ns, drift_ppm) >= local_ns, "drift {drift_ppm} ppm, deadline {local_ns} ns");
            // ...and not much later than the exact time.
            let exact_ns = local_ns as f64 * 1e6 / (1e6 + drift_ppm as f64);
            assert!(
                (real_ns as f64 - exact_ns).abs() < 1_000.0,
                "drift {drift_ppm}, {local_ns} ns: {real_ns} vs {exact_ns}"
            );
        }
    }
}
