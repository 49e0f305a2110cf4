//! Time, as the engine sees it: only what it is told.
//!
//! [`Instant`] is a point on *one member's* monotonic clock, in nanoseconds from an arbitrary
//! origin. The engine never reads a clock: every input carries `now`. Two members' instants are
//! not comparable — in the simulator each member's clock runs at its own offset and drift, and
//! may jump — so nothing replicated ever carries an `Instant`; replicated state carries durations
//! (a lease's TTL, a checkpoint's remaining TTL) that each member adds to its own `now`.

use std::ops::{Add, Sub};

pub use core::time::Duration;

/// A point on this member's monotonic clock. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    /// Later than any instant a run reaches: "never".
    pub const NEVER: Instant = Instant(u64::MAX);

    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later (a clock that jumped
    /// back must never make a duration negative).
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at [`Instant::NEVER`].
    fn add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_nanos(1_000);
        assert_eq!(t + Duration::from_nanos(500), Instant::from_nanos(1_500));
        assert_eq!(Instant::from_nanos(10) - t, Duration::ZERO);
        assert_eq!(Instant::NEVER + Duration::from_secs(1), Instant::NEVER);
        assert_eq!(t + Duration::MAX, Instant::NEVER);
    }
}
