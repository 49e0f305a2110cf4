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
//! - [`limits`]: every bound of the system, in one place, with etcd's defaults;
//! - [`error`]: etcd's errors, with their gRPC codes and the exact message strings clients
//!   match on;
//! - [`watch`]: the watch hub — etcd's watch streams and watchers, fed by the store's writes,
//!   with bounded per-stream queues and catch-up from the store's history.
//!
//! Raft replication, leases and membership (the `Node`) build on these.

pub mod error;
pub mod limits;
pub mod mvcc;
pub mod time;
pub mod watch;

pub use error::{Error, GrpcCode};
