//! Canary bugs: deliberate, well-known mistakes that the simulator and the checkers must find.
//!
//! Compiled only with the `canary` cargo feature, which no normal build turns on (the `detcd`
//! binary never has it; `detcd-sim --canary NAME` is built with it in its own target dir). Each
//! canary mirrors a class of real etcd bugs, named on its variant, and is switched on for the
//! whole process with [`set`] before any member starts: every member of a simulated cluster
//! carries the same bug, as every member of a real cluster runs the same binary.
//!
//! A canary that the sweep stops finding means a fault kind, a workload or a check has gone
//! blind: that is what they are for.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Canary {
    /// A leader answers linearizable reads from its own state without confirming it is still
    /// leader (no ReadIndex round): once deposed it serves stale reads. Jepsen's 2014 etcd
    /// analysis (etcd #741), the reason etcd has quorum reads and ReadIndex.
    StaleRead = 1,
    /// A snapshot records an applied index one entry behind the state it holds, so the member
    /// that restarts from it (or installs it) applies that entry a second time. etcd #13766 /
    /// #13514: in 3.5.0–3.5.2 the consistent index was not saved atomically with the data,
    /// and each restart re-applied the last entry.
    DoubleApply = 2,
    /// A watcher that catches up from history to the present is sent the events of the last
    /// revision it caught up once more. etcd #15248 (fixed in 3.4.24 / 3.5.8): a watcher moving
    /// from the unsynced to the synced group could be sent duplicated events.
    WatchResend = 3,
    /// After a snapshot install, synced watchers are not caught up over the revisions the
    /// snapshot skipped: their events are never sent. etcd #8411: a member that rejoined by
    /// snapshot sent no events for the revisions it restored.
    WatchRestoreSilent = 4,
    /// A watcher catching up from a revision that was compacted away is silently moved past
    /// the compaction instead of being canceled with `compact_revision`: the compacted events
    /// are lost without the client knowing. etcd #18089-class (events lost at compaction).
    WatchDropCompacted = 5,
    /// A new leader does not refresh its leases (no restart of their clocks, no election-timeout
    /// extension): each expires one TTL after the member applied its grant, so every lease a
    /// client kept alive at the old leader for longer than its TTL expires at the election, en
    /// masse. etcd PR #4778 ("refresh the lease TTL correctly when a leader is elected").
    LeaseNoExtension = 6,
    /// The disk acknowledges a persist without syncing it: a crash loses writes the cluster
    /// acknowledged. etcd #10508-class (entries applied/acknowledged before they are durable).
    UnsyncedAck = 7,
}

pub const ALL: [Canary; 7] = [
    Canary::StaleRead,
    Canary::DoubleApply,
    Canary::WatchResend,
    Canary::WatchRestoreSilent,
    Canary::WatchDropCompacted,
    Canary::LeaseNoExtension,
    Canary::UnsyncedAck,
];

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Turns `canary` on for this process (None: off).
pub fn set(canary: Option<Canary>) {
    ACTIVE.store(canary.map_or(0, |c| c as u8), Ordering::Relaxed);
}

/// Whether `canary` is the one switched on.
pub fn on(canary: Canary) -> bool {
    ACTIVE.load(Ordering::Relaxed) == canary as u8
}

impl Canary {
    pub fn name(self) -> &'static str {
        match self {
            Canary::StaleRead => "stale-read",
            Canary::DoubleApply => "double-apply",
            Canary::WatchResend => "watch-resend",
            Canary::WatchRestoreSilent => "watch-restore-silent",
            Canary::WatchDropCompacted => "watch-drop-compacted",
            Canary::LeaseNoExtension => "lease-no-extension",
            Canary::UnsyncedAck => "unsynced-ack",
        }
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Canary {
    type Err = String;
    fn from_str(s: &str) -> Result<Canary, String> {
        ALL.iter().copied().find(|c| c.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|c| c.name()).collect();
            format!("unknown canary {s:?}; one of: {}", names.join(", "))
        })
    }
}
