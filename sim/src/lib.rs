//! # detcd-sim
//!
//! The deterministic simulator. This crate will run whole detcd clusters — the real driver from
//! `detcd-server` — under madsim (`RUSTFLAGS="--cfg madsim"`), with our own seams where madsim
//! has none: a simulated disk per member that loses unsynced writes on a crash, tears or
//! corrupts them, and fails fsyncs; and a clock per member with offset, drift and jumps. Faults
//! and workloads are drawn from one `u64` seed (swarm testing); every client operation is
//! recorded as history for `detcd-checks`; any failure prints one line that replays it.
//!
//! Not built yet: the binary `detcd-sim` says so and exits.
