//! Leases, with etcd's semantics (its `server/lease/lessor.go`), minus goroutines and clock.
//!
//! A lease is a TTL that a client keeps alive; keys written with the lease are deleted when it
//! is revoked, by the client or because it expired. The [`Lessor`] holds every lease and the
//! keys attached to each.
//!
//! # Two kinds of state
//!
//! - **Replicated** — which leases exist, their granted TTL, the remaining TTL of their last
//!   *checkpoint*, and the attached keys. It changes only when a raft entry is applied
//!   ([`Lessor::grant`], [`Lessor::revoke`], [`Lessor::checkpoint`], and
//!   [`Lessor::apply_events`] with the events of each store write), identically on every
//!   member, and it is what a state image holds ([`Lessor::to_images`], [`Lessor::restore`]).
//! - **Leader-only** — when each lease expires, on this member's clock. Only the *primary*
//!   lessor (the raft leader's) runs lease clocks: [`Lessor::promote`] starts them,
//!   [`Lessor::demote`] stops them, [`Lessor::renew`] (keepalive) resets one. The primary never
//!   deletes anything itself: [`Lessor::expired`] names the expired leases and the leader
//!   proposes a `LeaseRevoke` for each, which every member then applies. Instants never leave
//!   the member; what crosses members is durations (TTLs, checkpointed remaining TTLs).
//!
//! # Calling order (the node's side)
//!
//! 1. On applying an entry: `LeaseGrant` → [`Lessor::grant`]; `LeaseRevoke` →
//!    [`Lessor::revoke`], then delete the returned keys in **one** store revision and pass the
//!    events to [`Lessor::apply_events`]; `LeaseCheckpoint` → [`Lessor::checkpoint`] per
//!    checkpoint; any put / delete-range / txn → the store (with the lessor as its
//!    [`crate::mvcc::LeaseView`]) and then [`Lessor::apply_events`] with its events.
//! 2. When the member becomes leader and has applied its term's first (empty) entry:
//!    [`Lessor::promote`]`(now, election_timeout)`. When it stops being leader:
//!    [`Lessor::demote`].
//! 3. On a keepalive: [`Lessor::renew`] (the leader only; followers forward).
//! 4. At [`Lessor::next_deadline`] (fold it into the node's `poll_timeout`), and at most every
//!    [`crate::limits::LEASE_EXPIRY_CHECK_INTERVAL_MS`] to respect the revoke rate:
//!    [`Lessor::expired`] → propose a `LeaseRevoke` for each;
//!    [`Lessor::checkpoints_due`] → propose them in one `LeaseCheckpointRequest`.
//!
//! # etcd behaviours kept
//!
//! - Grant: id 0 is refused as not-found, TTL above 9,000,000,000 s as too large (checked
//!   before the id is looked up), an existing id as existing; TTLs below the minimum
//!   ([`min_ttl_s`]) are raised to it; a lease granted on a non-primary never expires locally.
//! - Revoke: the keys are deleted in key order, in one revision, with the lease.
//! - Promote: expiry = now + extend + (checkpointed remaining TTL, or the TTL); expiries that
//!   pile up beyond three quarters of the revoke rate per second are spread out.
//! - Expired leases: handed out at most a batch at a time, and again only after a retry
//!   interval if the revoke did not happen.
//! - Checkpoints (etcd 3.6, always persisted): every 5 minutes for leases with a longer TTL,
//!   remaining TTL rounded up, skipped when it equals the TTL; unknown ids ignored on apply; a
//!   renew of a lease with a checkpointed remaining TTL has the leader checkpoint `0` ("full
//!   TTL") so that a later leader does not restart the lease from a stale remaining TTL.
//! - `TimeToLive` on the leader: seconds to expiry, rounded down.
//!
//! # Deliberate differences
//!
//! - A renew of an expired lease whose revoke is pending answers [`crate::Error::LeaseNotFound`]
//!   at once (etcd blocks until the revoke applies; a sans-IO core cannot block).
//! - `TimeToLive` never reports a negative TTL (etcd can, between expiry and revoke), and on a
//!   non-primary member reports the checkpointed remaining TTL or the granted TTL (etcd
//!   forwards the request to the leader, which the node may still do).
//! - [`Lessor::leases`] is in id order (etcd sorts by expiry, which means nothing off the
//!   leader).
//! - A checkpoint that applies on the primary after a renew it missed (computed before the
//!   renew) is cleared again; etcd keeps the stale value until the next renew.
//! - The primary keeps one checkpoint scheduled per long lease for as long as it leads, instead
//!   of rescheduling only when a checkpoint applies: a lost checkpoint proposal does not end
//!   the lease's checkpoints.

mod lessor;
mod record;
mod schedule;

#[cfg(test)]
mod tests;

pub use lessor::{LeaseGrant, Lessor, TimeToLive};

/// etcd's minimum lease TTL for a member's raft timing, in seconds: one and a half election
/// timeouts, `(3 * election_ticks / 2) * heartbeat_interval`, rounded up to whole seconds.
///
/// Why: a lease must outlive a leader election, or every leader change would expire the
/// shortest leases before their clients could reach the new leader.
///
/// As in etcd's code (`time.Duration((3*cfg.ElectionTicks)/2) * heartbeat`, then
/// `math.Ceil(minTTL.Seconds())`), `3 * election_ticks / 2` is an integer division: 5 ticks
/// of 100 ms give 700 ms, hence 1 s. At etcd's defaults (10 ticks of 100 ms) it is 2 s.
/// Never below 1 s.
pub fn min_ttl_s(election_ticks: u64, heartbeat_interval_ms: u64) -> i64 {
    let min_ttl_ms = u128::from(election_ticks.saturating_mul(3) / 2) * u128::from(heartbeat_interval_ms);
    let min_ttl_s = min_ttl_ms.div_ceil(1000).max(1);
    i64::try_from(min_ttl_s).unwrap_or(i64::MAX).min(crate::limits::MAX_LEASE_TTL_S)
}
