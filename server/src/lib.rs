//! # detcd-server
//!
//! The program people run. This crate will hold:
//!
//! - the **driver**: one async event loop, written against tokio's API, that feeds
//!   `detcd_engine::Node` its inputs (client requests, peer messages, timeouts, persistence
//!   completions) and carries out its outputs. Built with `RUSTFLAGS="--cfg madsim"` the same
//!   source runs on madsim inside `detcd-sim`;
//! - the **seams** injected into the driver: clock (OS monotonic clock in production) and disk
//!   (CRC-framed WAL segments with group commit, atomically written snapshot files);
//! - the etcd v3 **gRPC services** (KV, Watch, Lease, Cluster, Maintenance), as thin as etcd's
//!   `v3rpc` handlers: validate, call the core, fill the response header;
//! - the **peer transport** (raft messages as bytes, snapshots in chunks);
//! - the binary `detcd`, with etcd's flags and `ETCD_*` environment variables.
//!
//! None of this is built yet (see the project's issues); the binary says so and exits.

pub mod disk;

/// The version printed by `detcd --version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
