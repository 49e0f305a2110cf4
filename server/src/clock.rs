//! The member's clock seam: the engine's `Instant` from the runtime's monotonic clock.
//!
//! In production that is the OS monotonic clock (through tokio); under `--cfg madsim` it is the
//! simulator's virtual clock, to which the simulator adds each member's own offset and drift.

use detcd_engine::time::{Duration, Instant};

/// Converts between the runtime's instants and the engine's, from a fixed origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock { origin: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> Instant {
        Instant::from_nanos(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    /// The runtime instant of `at`; "never" becomes a day from now, which is as good.
    pub fn runtime_instant(&self, at: Instant) -> tokio::time::Instant {
        let latest = tokio::time::Instant::now() + Duration::from_secs(86_400);
        self.origin.checked_add(Duration::from_nanos(at.as_nanos())).map_or(latest, |t| t.min(latest))
    }
}
