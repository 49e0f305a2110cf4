//! The lessor: every lease, the keys attached to each, and — on the primary — the expiry and
//! checkpoint queues. See the [module docs](super) for the contract.

use std::collections::BTreeMap;

use bytes::Bytes;
use detcd_proto::internalpb::LeaseImage;
use detcd_proto::mvccpb::{event::EventType, Event};

use super::record::{ceil_s, floor_s, seconds, Lease, Timers};
use super::schedule::Schedule;
use crate::mvcc::LeaseView;
use crate::time::{Duration, Instant};
use crate::{limits, Error};

/// A granted lease, as `LeaseGrantResponse` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant {
    pub id: i64,
    /// The TTL granted, in seconds: the one asked for, raised to the minimum TTL.
    pub ttl_s: i64,
}

/// A lease's state, as `LeaseTimeToLiveResponse` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeToLive {
    /// The TTL granted, in seconds (`grantedTTL`).
    pub granted_ttl_s: i64,
    /// Seconds left (`TTL`): on the primary from its expiry, rounded down, never negative; on
    /// any other member the checkpointed remaining TTL, or the granted TTL if none.
    pub remaining_ttl_s: i64,
    /// The attached keys, in key order.
    pub keys: Vec<Bytes>,
}

/// etcd's lessor, without goroutines or a clock. See the [module docs](super).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lessor {
    /// Shorter TTLs are raised to this (see [`super::min_ttl_s`]).
    min_ttl_s: i64,
    leases: BTreeMap<i64, Lease>,
    /// Which lease each leased key is attached to: the inverse of every `Lease::keys`.
    key_leases: BTreeMap<Bytes, i64>,
    /// This member is the raft leader and runs the lease clocks.
    primary: bool,
    /// Primary only: every lease, by `Timers::expiry_queued_at`.
    expiries: Schedule,
    /// Primary only: leases with a checkpoint scheduled, by `Timers::checkpoint_at`.
    checkpoints: Schedule,
    /// Canary `lease-no-extension` only: when this member applied each lease's grant, by its
    /// own clock — the only expiry a follower could compute (keepalives are not replicated).
    #[cfg(feature = "canary")]
    granted_at: BTreeMap<i64, Instant>,
}

fn checkpoint_interval() -> Duration {
    Duration::from_millis(limits::LEASE_CHECKPOINT_INTERVAL_MS)
}

/// etcd compares a lease's TTL with the interval's whole seconds (`int64(interval.Seconds())`).
fn checkpoint_interval_s() -> i64 {
    floor_s(checkpoint_interval())
}

/// Only leases that outlive a checkpoint interval are checkpointed: for shorter ones a new
/// leader's full-TTL restart overshoots by less than the interval anyway.
fn wants_checkpoints(lease: &Lease) -> bool {
    lease.ttl_s > checkpoint_interval_s()
}

impl Lessor {
    /// An empty, non-primary lessor. `min_ttl_s` is the member's minimum TTL
    /// ([`super::min_ttl_s`] of its raft timing); every member of a cluster must use the same.
    pub fn new(min_ttl_s: i64) -> Lessor {
        assert!(
            (1..=limits::MAX_LEASE_TTL_S).contains(&min_ttl_s),
            "minimum lease TTL {min_ttl_s} s outside 1..=MAX_LEASE_TTL_S"
        );
        Lessor {
            min_ttl_s,
            leases: BTreeMap::new(),
            key_leases: BTreeMap::new(),
            primary: false,
            expiries: Schedule::default(),
            checkpoints: Schedule::default(),
            #[cfg(feature = "canary")]
            granted_at: BTreeMap::new(),
        }
    }

    pub fn min_ttl_s(&self) -> i64 {
        self.min_ttl_s
    }

    // ---- replicated operations: applied from the raft log, identically on every member ----

    /// Applies a `LeaseGrant`. Errors, in etcd's order: id 0 → [`Error::LeaseNotFound`] (the
    /// server picks an id before proposing, so 0 never reaches here from a well-behaved
    /// proposer), TTL above [`limits::MAX_LEASE_TTL_S`] → [`Error::LeaseTtlTooLarge`], id in
    /// use → [`Error::LeaseExists`]. A TTL below the minimum (also zero or negative) is raised
    /// to it. On the primary the lease expires at `now + ttl`; elsewhere it never expires
    /// locally (`now` is then unused — the outcome is the same on every member).
    pub fn grant(&mut self, id: i64, ttl_s: i64, now: Instant) -> Result<LeaseGrant, Error> {
        if id == 0 {
            return Err(Error::LeaseNotFound);
        }
        if ttl_s > limits::MAX_LEASE_TTL_S {
            return Err(Error::LeaseTtlTooLarge);
        }
        let ttl_s = ttl_s.max(self.min_ttl_s);
        if self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        self.leases.insert(id, Lease::new(ttl_s, 0));
        #[cfg(feature = "canary")]
        self.granted_at.insert(id, now);
        if self.primary {
            self.start_timers(id, now, Duration::ZERO);
        }
        assert_eq!(self.leases[&id].timers.is_some(), self.primary);
        Ok(LeaseGrant { id, ttl_s })
    }

    /// Applies a `LeaseRevoke` (a client's, or the primary's for an expired lease): removes the
    /// lease and returns its keys in key order. The caller deletes them in one store revision —
    /// in this order, so every member's store and hash stay equal — and passes the resulting
    /// events to [`Lessor::apply_events`] (they find the keys already detached). A lease can
    /// hold any number of keys: etcd deletes them in one internal write, not a client txn, so
    /// the txn op limit does not apply to it.
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Bytes>, Error> {
        let lease = self.leases.remove(&id).ok_or(Error::LeaseNotFound)?;
        #[cfg(feature = "canary")]
        self.granted_at.remove(&id);
        if let Some(timers) = &lease.timers {
            self.expiries.remove(timers.expiry_queued_at, id);
            if let Some(at) = timers.checkpoint_at {
                self.checkpoints.remove(at, id);
            }
        }
        for key in &lease.keys {
            let owner = self.key_leases.remove(key);
            assert_eq!(owner, Some(id), "key {key:?} of lease {id:#x} indexed elsewhere");
        }
        Ok(lease.keys.into_iter().collect())
    }

    /// Applies one `LeaseCheckpoint`: records the lease's remaining TTL (<= 0 clears it, so the
    /// full TTL counts again). Only [`Lessor::promote`] and reads on non-primary members use it;
    /// the primary's own clock is untouched. Unknown ids are ignored, as etcd does (the lease
    /// may have been revoked after the checkpoint was proposed).
    pub fn checkpoint(&mut self, id: i64, remaining_ttl_s: i64) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        lease.remaining_ttl_s = remaining_ttl_s;
        if remaining_ttl_s <= 0 {
            return;
        }
        // On the primary: a checkpoint computed before a renew that this member answered
        // understates the lease's life; a new leader would expire the lease early. Clear it.
        if let Some(renewed_at) = lease.timers.as_ref().and_then(|t| t.renewed_since_checkpoint) {
            self.schedule_clear(id, renewed_at);
        }
    }

    /// Attaches and detaches keys as a store write changed them (the `events` of
    /// [`crate::mvcc::Applied`], in order): a `prev_kv` with a lease detaches that key from that
    /// lease; a put whose new value has a lease attaches the key to it.
    ///
    /// # Panics
    /// If a put attaches to a lease that does not exist (the store checks leases through
    /// [`LeaseView`] before writing, so the lessor and the store disagree), or if a key is
    /// attached to a lease other than its previous value says.
    pub fn apply_events(&mut self, events: &[Event]) {
        for event in events {
            if let Some(prev) = &event.prev_kv {
                if prev.lease != 0 {
                    self.detach(&prev.key, prev.lease);
                }
            }
            if event.r#type == EventType::Put as i32 {
                let kv = event.kv.as_ref().expect("a put event carries its key-value");
                if kv.lease != 0 {
                    self.attach(kv.key.clone(), kv.lease);
                }
            }
        }
    }

    fn attach(&mut self, key: Bytes, id: i64) {
        let lease = self
            .leases
            .get_mut(&id)
            .unwrap_or_else(|| panic!("put attached {key:?} to lease {id:#x}, which is unknown"));
        let fresh = lease.keys.insert(key.clone());
        assert!(fresh, "key {key:?} attached twice to lease {id:#x}");
        let previous = self.key_leases.insert(key, id);
        assert_eq!(previous, None, "key attached while still attached elsewhere");
    }

    fn detach(&mut self, key: &Bytes, id: i64) {
        match self.key_leases.get(key) {
            // The lease was revoked (its keys went with it), or — after a restore from an image
            // whose key named a lease the image lacked — never attached.
            None => {}
            Some(&owner) => {
                assert_eq!(owner, id, "key {key:?} attached to {owner:#x}, its value says {id:#x}");
                self.key_leases.remove(key);
                let removed = self.leases.get_mut(&id).expect("an indexed key's lease exists").keys.remove(key);
                assert!(removed, "key {key:?} indexed to lease {id:#x} but not in it");
            }
        }
    }

    // ---- leader only: this member's clock, never replicated ------------------------------

    /// This member became the raft leader (etcd calls it once the leader has applied the empty
    /// entry of its term, with `extend` = the election timeout). Every lease restarts its clock:
    /// expiry = `now + extend + remaining`, where remaining is the checkpointed remaining TTL
    /// if set, else the full TTL — so an election never expires leases that a client kept alive
    /// at the old leader. With at least [`limits::LEASE_REVOKE_RATE_PER_S`] leases, expiries
    /// that pile up are then spread out, as etcd does, so that they can be revoked at that rate.
    /// Promoting a primary starts its clocks over.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        if self.primary {
            self.demote();
        }
        assert!(self.expiries.len() == 0 && self.checkpoints.len() == 0);
        self.primary = true;
        let ids: Vec<i64> = self.leases.keys().copied().collect();
        for id in ids {
            self.start_timers(id, now, extend);
        }
        // The canary: the new leader does not refresh its leases — each expires one TTL after
        // this member applied its grant, however long clients kept it alive at the old leader:
        // the leases of a long-lived client expire en masse at the election. etcd PR #4778
        // ("refresh the lease TTL correctly when a leader is elected").
        #[cfg(feature = "canary")]
        if crate::canary::on(crate::canary::Canary::LeaseNoExtension) {
            for (id, granted_at) in self.granted_at.clone() {
                let ttl_s = self.leases[&id].ttl_s;
                self.set_expiry(id, granted_at + seconds(ttl_s));
            }
        }
        self.spread_expiries(now);
        assert_eq!(self.expiries.len(), self.leases.len());
    }

    /// etcd's pile-up avoidance. Walk the leases by expiry, in windows of at least one second;
    /// once a window holds more than three quarters of the revoke rate (a quarter stays free
    /// for leases that expire on their own), each further lease is pushed back by the share
    /// of a second its rank is over the target, measured from the window's start.
    fn spread_expiries(&mut self, now: Instant) {
        let rate = limits::LEASE_REVOKE_RATE_PER_S;
        if self.leases.len() < rate {
            return;
        }
        const SECOND_NS: u128 = 1_000_000_000;
        let target = (3 * rate / 4).max(1) as u128;
        let by_expiry: Vec<(Instant, i64)> = self.expiries.iter().collect();
        let remaining_ns = |expiry: Instant| expiry.saturating_duration_since(now).as_nanos();
        let mut window_ns = remaining_ns(by_expiry[0].0);
        let mut next_window_ns = window_ns + SECOND_NS;
        let mut expires: u128 = 0;
        for (expiry, id) in by_expiry {
            let remaining = remaining_ns(expiry);
            if remaining > next_window_ns {
                window_ns = remaining;
                next_window_ns = window_ns + SECOND_NS;
                expires = 1;
                continue;
            }
            expires += 1;
            if expires <= target {
                continue;
            }
            let delay_ns = (SECOND_NS * expires / target).saturating_sub(remaining - window_ns);
            next_window_ns = window_ns + delay_ns;
            let delay = Duration::from_nanos(u64::try_from(delay_ns).unwrap_or(u64::MAX));
            self.set_expiry(id, expiry + delay);
        }
    }

    /// This member is no longer the leader: no lease expires here any more, nothing is
    /// checkpointed from here. Idempotent (etcd demotes on every non-leader state change).
    pub fn demote(&mut self) {
        self.primary = false;
        for lease in self.leases.values_mut() {
            lease.timers = None;
        }
        self.expiries.clear();
        self.checkpoints.clear();
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// Whether `id` is a lease this primary has let expire (its revoke under way).
    pub fn is_expired(&self, id: i64, now: Instant) -> bool {
        self.primary && self.leases.get(&id).is_some_and(|lease| lease.timers().expiry <= now)
    }

    /// A keepalive: the lease expires `ttl` from `now` again; returns the TTL for the response.
    /// Errors: not primary → [`Error::NotLeader`] (the server forwards keepalives to the
    /// leader); unknown → [`Error::LeaseNotFound`]; already expired →
    /// [`Error::LeaseNotFound`] too: its revoke is under way and a renew must not resurrect it.
    /// (etcd waits for that revoke and then answers not-found, or not-primary if it was demoted
    /// first; the node does the same, asking [`Lessor::is_expired`] first: answering not-found
    /// before the revoke is applied is not linearizable, as the keys are still there and the
    /// revoke may never commit.)
    ///
    /// If the lease has a checkpointed remaining TTL, that value is now stale: as etcd 3.6 does,
    /// a checkpoint clearing it (remaining 0 = full TTL) becomes due at once, see
    /// [`Lessor::checkpoints_due`].
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64, Error> {
        if !self.primary {
            return Err(Error::NotLeader);
        }
        let lease = self.leases.get_mut(&id).ok_or(Error::LeaseNotFound)?;
        if lease.timers().expiry <= now {
            return Err(Error::LeaseNotFound);
        }
        let ttl_s = lease.ttl_s;
        let stale_checkpoint = lease.remaining_ttl_s > 0;
        let timers = lease.timers_mut();
        timers.renewed_since_checkpoint.get_or_insert(now);
        // The full TTL, not the checkpointed remaining: etcd applies the clearing checkpoint
        // before it refreshes the expiry.
        self.set_expiry(id, now + seconds(ttl_s));
        if stale_checkpoint {
            self.schedule_clear(id, now);
        }
        Ok(ttl_s)
    }

    /// Leases whose expiry is at or before `now`, earliest first, at most `max`: the primary
    /// proposes a `LeaseRevoke` for each. A lease handed out is handed out again only after
    /// [`limits::LEASE_EXPIRED_RETRY_INTERVAL_MS`] (in case its revoke was lost), never at
    /// once. Empty when not primary. The caller bounds the revoke rate: at most
    /// [`limits::LEASE_EXPIRED_BATCH_MAX`] every [`limits::LEASE_EXPIRY_CHECK_INTERVAL_MS`].
    pub fn expired(&mut self, now: Instant, max: usize) -> Vec<i64> {
        let mut expired = Vec::new();
        if !self.primary {
            return expired;
        }
        let retry_at = now + Duration::from_millis(limits::LEASE_EXPIRED_RETRY_INTERVAL_MS);
        while expired.len() < max {
            let Some((at, id)) = self.expiries.pop_due(now) else {
                break;
            };
            let timers = self.leases.get_mut(&id).expect("queued lease exists").timers_mut();
            assert_eq!(timers.expiry_queued_at, at);
            // Queued no earlier than its expiry, so a due entry is an expired lease.
            assert!(timers.expiry <= at, "lease {id:#x} queued before its expiry");
            timers.expiry_queued_at = retry_at;
            self.expiries.insert(retry_at, id);
            expired.push(id);
        }
        expired
    }

    /// Checkpoints the primary should propose now, as `(id, remaining_ttl_s)`, at most `max`
    /// (etcd batches up to [`limits::LEASE_CHECKPOINT_BATCH_MAX`] in one entry). Empty when not
    /// primary. Two kinds:
    /// - every [`limits::LEASE_CHECKPOINT_INTERVAL_MS`], for each lease whose TTL is longer than
    ///   that interval, its remaining TTL (rounded up to whole seconds), unless the lease is
    ///   expired or has its full TTL left (nothing worth recording);
    /// - after a renew made a checkpointed remaining TTL stale, `(id, 0)`: clear it, so that a
    ///   new leader gives the lease its full TTL.
    pub fn checkpoints_due(&mut self, now: Instant, max: usize) -> Vec<(i64, i64)> {
        let mut due = Vec::new();
        if !self.primary {
            return due;
        }
        let next_at = now + checkpoint_interval();
        while due.len() < max {
            let Some((at, id)) = self.checkpoints.pop_due(now) else {
                break;
            };
            let lease = self.leases.get_mut(&id).expect("scheduled lease exists");
            let (ttl_s, long) = (lease.ttl_s, wants_checkpoints(lease));
            let timers = lease.timers_mut();
            assert_eq!(timers.checkpoint_at, Some(at));
            timers.checkpoint_at = None;
            if timers.clear_checkpoint {
                timers.clear_checkpoint = false;
                due.push((id, 0));
            } else if timers.expiry > now {
                let remaining_ttl_s = ceil_s(timers.expiry - now);
                if remaining_ttl_s < ttl_s {
                    timers.renewed_since_checkpoint = None;
                    due.push((id, remaining_ttl_s));
                }
            }
            // The next one is a full interval away, so this loop never meets it again.
            if long {
                timers.checkpoint_at = Some(next_at);
                self.checkpoints.insert(next_at, id);
            }
        }
        due
    }

    /// The earliest instant at which [`Lessor::expired`] or [`Lessor::checkpoints_due`] may
    /// return something (for the node's `poll_timeout`); `None` when not primary or idle. It
    /// may be in the past: something is due now.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.primary {
            return None;
        }
        match (self.expiries.first_at(), self.checkpoints.first_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts a lease's clock on the primary: expires `extend` plus its remaining (or full) TTL
    /// from `now`; long leases get their first checkpoint an interval from now.
    fn start_timers(&mut self, id: i64, now: Instant, extend: Duration) {
        let lease = self.leases.get_mut(&id).expect("lease exists");
        assert!(self.primary && lease.timers.is_none());
        let expiry = now + extend + seconds(lease.remaining_or_ttl_s());
        let checkpoint_at = wants_checkpoints(lease).then(|| now + checkpoint_interval());
        lease.timers = Some(Timers {
            expiry,
            expiry_queued_at: expiry,
            checkpoint_at,
            clear_checkpoint: false,
            renewed_since_checkpoint: None,
        });
        self.expiries.insert(expiry, id);
        if let Some(at) = checkpoint_at {
            self.checkpoints.insert(at, id);
        }
    }

    /// Moves a primary lease's expiry (and its queue entry) to `expiry`.
    fn set_expiry(&mut self, id: i64, expiry: Instant) {
        let timers = self.leases.get_mut(&id).expect("lease exists").timers_mut();
        self.expiries.remove(timers.expiry_queued_at, id);
        timers.expiry = expiry;
        timers.expiry_queued_at = expiry;
        self.expiries.insert(expiry, id);
    }

    /// Makes the lease's next checkpoint a clearing one, due at `at`. One already pending
    /// stays where it is.
    fn schedule_clear(&mut self, id: i64, at: Instant) {
        let timers = self.leases.get_mut(&id).expect("lease exists").timers_mut();
        if timers.clear_checkpoint {
            return;
        }
        if let Some(old) = timers.checkpoint_at {
            self.checkpoints.remove(old, id);
        }
        timers.clear_checkpoint = true;
        timers.checkpoint_at = Some(at);
        self.checkpoints.insert(at, id);
    }

    // ---- reads ---------------------------------------------------------------------------

    /// `LeaseTimeToLive` for lease `id`; `None` if there is none (etcd's RPC layer then
    /// answers `TTL: -1` rather than an error).
    pub fn time_to_live(&self, id: i64, now: Instant) -> Option<TimeToLive> {
        let lease = self.leases.get(&id)?;
        let remaining_ttl_s = match &lease.timers {
            Some(timers) => floor_s(timers.expiry.saturating_duration_since(now)),
            None => lease.remaining_or_ttl_s(),
        };
        Some(TimeToLive { granted_ttl_s: lease.ttl_s, remaining_ttl_s, keys: lease.keys.iter().cloned().collect() })
    }

    /// Every lease id, in ascending order.
    /// The keys attached to lease `id`, in key order (none for an unknown lease).
    pub fn keys_of(&self, id: i64) -> Vec<Bytes> {
        self.leases.get(&id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn leases(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// The lease `key` is attached to, if any.
    pub fn lease_of(&self, key: &[u8]) -> Option<i64> {
        self.key_leases.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    // ---- images ----------------------------------------------------------------------------

    /// The replicated state, in lease id order: TTL and checkpointed remaining TTL. Keys are not
    /// in it — they come back from the store's live keys on [`Lessor::restore`].
    pub fn to_images(&self) -> Vec<LeaseImage> {
        self.leases
            .iter()
            .map(|(&id, lease)| LeaseImage { id, ttl_s: lease.ttl_s, remaining_ttl_s: lease.remaining_ttl_s })
            .collect()
    }

    /// Rebuilds a lessor from a state image: its leases, and the store's live keys with their
    /// lease (`(key, lease)`, lease 0 = none, skipped). TTLs are raised to `min_ttl_s` as etcd
    /// does on recovery. A key naming a lease the image lacks is left unattached, as etcd does
    /// (it logs and carries on). The restored lessor is not primary.
    ///
    /// # Panics
    /// On an image that cannot come from [`Lessor::to_images`]: lease id 0, an id twice, a TTL
    /// above the maximum, or a key listed twice.
    pub fn restore(
        images: &[LeaseImage],
        keys_with_leases: impl IntoIterator<Item = (Bytes, i64)>,
        min_ttl_s: i64,
    ) -> Lessor {
        let mut lessor = Lessor::new(min_ttl_s);
        for image in images {
            assert_ne!(image.id, 0, "lease 0 in an image");
            assert!(image.ttl_s <= limits::MAX_LEASE_TTL_S, "image TTL too large");
            let lease = Lease::new(image.ttl_s.max(min_ttl_s), image.remaining_ttl_s);
            let previous = lessor.leases.insert(image.id, lease);
            assert!(previous.is_none(), "lease {:#x} twice in an image", image.id);
        }
        for (key, id) in keys_with_leases {
            if id == 0 {
                continue;
            }
            if let Some(lease) = lessor.leases.get_mut(&id) {
                lease.keys.insert(key.clone());
                let previous = lessor.key_leases.insert(key, id);
                assert_eq!(previous, None, "a key listed twice in an image");
            }
        }
        lessor.invariants();
        lessor
    }

    // ---- checks ------------------------------------------------------------------------------

    /// The primary's expiry of lease `id` (tests look at the spread of expiries).
    #[cfg(test)]
    pub(super) fn expiry_of(&self, id: i64) -> Option<Instant> {
        self.leases.get(&id)?.timers.as_ref().map(|t| t.expiry)
    }

    /// Checks every structural invariant, panicking on the first broken one. O(leases + keys):
    /// for tests and the simulator, after each step.
    pub fn invariants(&self) {
        let mut attached = 0usize;
        for (&id, lease) in &self.leases {
            assert_ne!(id, 0, "lease 0 exists");
            assert!(
                (self.min_ttl_s..=limits::MAX_LEASE_TTL_S).contains(&lease.ttl_s),
                "lease {id:#x} TTL {} outside min..=max",
                lease.ttl_s
            );
            for key in &lease.keys {
                assert_eq!(self.key_leases.get(key), Some(&id), "key of {id:#x} unindexed");
            }
            attached += lease.keys.len();
            match (&lease.timers, self.primary) {
                (None, false) => {}
                (Some(t), true) => {
                    assert!(t.expiry <= t.expiry_queued_at, "{id:#x} queued before expiry");
                    assert!(self.expiries.contains(t.expiry_queued_at, id), "{id:#x} unqueued");
                    match t.checkpoint_at {
                        Some(at) => assert!(self.checkpoints.contains(at, id)),
                        None => assert!(!wants_checkpoints(lease) && !t.clear_checkpoint),
                    }
                }
                (_, primary) => panic!("lease {id:#x} timers do not match primary={primary}"),
            }
        }
        assert_eq!(attached, self.key_leases.len(), "key index has stray keys");
        for (key, id) in &self.key_leases {
            let lease = self.leases.get(id).expect("indexed key's lease exists");
            assert!(lease.keys.contains(key), "indexed key missing from its lease");
        }
        if self.primary {
            assert_eq!(self.expiries.len(), self.leases.len(), "expiry queue size");
            let scheduled = self.leases.values().filter(|l| l.timers().checkpoint_at.is_some());
            assert_eq!(self.checkpoints.len(), scheduled.count(), "checkpoint queue size");
        } else {
            assert_eq!(self.expiries.len(), 0, "non-primary expiry queue");
            assert_eq!(self.checkpoints.len(), 0, "non-primary checkpoint queue");
        }
    }
}

impl LeaseView for Lessor {
    fn lease_exists(&self, lease_id: i64) -> bool {
        self.leases.contains_key(&lease_id)
    }
}
