//! # detcd-sim
//!
//! The deterministic simulator: real detcd members — the same `detcd_server::serve` that
//! production runs — inside madsim (`RUSTFLAGS="--cfg madsim"`), where one `u64` seed decides
//! every message delay, every fault and every client's choices, so that a failing run replays
//! bit for bit.
//!
//! - [`disk`]: a simulated file system per member under the real `FileStorage` (the real WAL
//!   format and recovery): writes buffered until sync, power failure at an armed operation
//!   (torn tails), failing fsyncs, bit flips in old WAL segments.
//! - [`schedule`]: the fault schedule drawn from the seed (swarm testing: the seed turns each
//!   fault kind on or off), printable and parseable, so that `shrink` can cut it down and a file
//!   replays it.
//! - `run` (only under `--cfg madsim`): a run — members, clients of the `detcd_checks` workloads
//!   recording a history, the schedule's faults, then the liveness phase (progress, equal
//!   hashes, acknowledged puts present) — and the binary `detcd-sim` (run, sweep, shrink).
//!
//! Without `--cfg madsim` the crate holds the simulated disk and the schedule (and their tests);
//! the binary says how to build it for the simulator.

pub mod disk;
pub mod schedule;

#[cfg(madsim)]
pub mod run;
