//! One lease: its replicated part (TTL, checkpointed remaining TTL, attached keys) and, while
//! this member is primary, its timers on this member's clock.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    /// The TTL granted, in seconds, already raised to the minimum TTL. Always >= 1.
    pub(crate) ttl_s: i64,
    /// The remaining TTL of the last applied checkpoint, in seconds; <= 0 means unset (never
    /// checkpointed, or cleared by a renew), and then the full TTL counts. Replicated: every
    /// member holds the same value, and a new leader starts the lease's clock from it.
    pub(crate) remaining_ttl_s: i64,
    /// Keys whose live value carries this lease, in key order (revoke deletes them in this
    /// order, the same on every member).
    pub(crate) keys: BTreeSet<Bytes>,
    /// `Some` exactly while the lessor is primary. Never replicated, never in an image: instants
    /// of one member's clock mean nothing on another.
    pub(crate) timers: Option<Timers>,
}

/// A lease's leader-only state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timers {
    /// When the lease expires on this member's clock.
    pub(crate) expiry: Instant,
    /// The instant of the lease's entry in the expiry queue: `expiry`, or — once the lease was
    /// handed out as expired — the time its revoke is retried. Never before `expiry`.
    pub(crate) expiry_queued_at: Instant,
    /// The instant of the lease's entry in the checkpoint queue, if it has one.
    pub(crate) checkpoint_at: Option<Instant>,
    /// The next checkpoint must clear the remaining TTL (a renew made the checkpointed
    /// remaining TTL stale): it is emitted as remaining TTL 0, "use the full TTL".
    pub(crate) clear_checkpoint: bool,
    /// The first renew since this member last emitted a checkpoint of the lease. A checkpoint
    /// that applies while this is set was computed before that renew, so it understates the
    /// remaining TTL and has to be cleared again.
    pub(crate) renewed_since_checkpoint: Option<Instant>,
}

impl Lease {
    pub(crate) fn new(ttl_s: i64, remaining_ttl_s: i64) -> Lease {
        assert!(ttl_s >= 1, "a lease TTL is at least 1 s, got {ttl_s}");
        Lease { ttl_s, remaining_ttl_s, keys: BTreeSet::new(), timers: None }
    }

    /// etcd's `getRemainingTTL`: the checkpointed remaining TTL if one is set, else the full
    /// TTL. A new leader gives the lease this much (plus its election allowance).
    pub(crate) fn remaining_or_ttl_s(&self) -> i64 {
        if self.remaining_ttl_s > 0 {
            self.remaining_ttl_s
        } else {
            self.ttl_s
        }
    }

    pub(crate) fn timers(&self) -> &Timers {
        self.timers.as_ref().expect("a primary lessor's lease has timers")
    }

    pub(crate) fn timers_mut(&mut self) -> &mut Timers {
        self.timers.as_mut().expect("a primary lessor's lease has timers")
    }
}

/// `s` whole seconds; `s` is positive (TTLs and set remaining TTLs are).
pub(crate) fn seconds(s: i64) -> Duration {
    Duration::from_secs(u64::try_from(s).expect("a positive number of seconds"))
}

/// Whole seconds in `d`, rounded down (etcd's `int64(d.Seconds())` for a positive `d`).
pub(crate) fn floor_s(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Whole seconds in `d`, rounded up (etcd's `int64(math.Ceil(d.Seconds()))`).
pub(crate) fn ceil_s(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}
