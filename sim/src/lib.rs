//! # detcd-sim
//!
//! The deterministic simulator: real detcd members — the same `detcd_server::serve` that
//! production runs — inside madsim (`RUSTFLAGS="--cfg madsim"`), where one `u64` seed decides
//! every message delay, every fault and every client's choices, so that a failing run replays
//! bit for bit.
//!
//! This first part runs a 3- or 5-member cluster with one client node per client, injects
//! crashes and restarts (a member restarts from its simulated disk) and network partitions
//! (a member cut off from everyone), drives a register workload of unique writes and reads,
//! then — faults over — checks that every acknowledged write is in every member's history at
//! its revision and that all members' hashes agree. The simulated disk keeps what the member
//! synced (`detcd_engine::harness::Disk` semantics); tearing, bit flips, failing fsyncs, clock
//! skew, membership changes and the Jepsen-like checkers over the recorded history are the
//! next parts (see the project's issues).
//!
//! Without `--cfg madsim` the crate holds only the simulated disk; the binary says how to build
//! it for the simulator.

pub mod disk;
pub mod schedule;

#[cfg(madsim)]
pub mod run;
