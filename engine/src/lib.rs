//! # detcd-engine
//!
//! The sans-IO core of detcd. Everything a member decides lives here, as plain data structures
//! driven by method calls: no IO, no clock (time comes in as an argument), no threads, no OS
//! randomness (a generator seeded by the caller), no tokio. The same core therefore runs under
//! tokio in production and under madsim in the simulator, and one seed replays a whole run.
//!
//! Today the crate holds:
//!
//! - [`mvcc`]: the multi-version key-value store with etcd's exact semantics (range, put,
//!   delete-range, txn, compact, hash);
//! - [`lease`]: the lessor — leases, their attached keys, and the leader's lease clocks
//!   (expiry, keepalive, checkpoints) on the injected time;
//! - [`limits`]: every bound of the system, in one place, with etcd's defaults;
//! - [`error`]: etcd's errors, with their gRPC codes and the exact message strings clients
//!   match on;
//! - [`watch`]: the watch hub — etcd's watch streams and watchers, fed by the store's writes,
//!   with bounded per-stream queues and catch-up from the store's history;
//! - [`auth`]: users, roles, key-range permissions, simple tokens (etcd's auth store);
//! - [`membership`]: the replicated member list;
//! - [`raft`]: raft-rs's log storage; [`node`]: a member's whole state machine, sans IO;
//! - [`harness`]: a deterministic in-process cluster for tests and benchmarks;
//! - [`time`]: the injected time.

pub mod auth;
#[cfg(feature = "canary")]
pub mod canary;
pub mod error;
pub mod harness;
pub mod lease;
pub mod limits;
pub mod membership;
pub mod mvcc;
pub mod node;
pub mod raft;
pub mod time;
pub mod watch;

pub use error::{Error, GrpcCode};
