//! The multi-version key-value store, with etcd's semantics.
//!
//! Every write creates a new *revision* of the whole store (a txn creates one revision for all
//! its writes, numbered by sub-revision inside it), and every revision since the last
//! compaction stays readable. This is etcd's MVCC model, kept entirely in memory as etcd keeps
//! its key index: a sorted map from key to the key's [history](key_history) of versions. The
//! values live in the same map (a sans-IO core cannot pause an apply to read a value from disk);
//! durability is the job of the raft log and the state image built on top of this store.
//!
//! Requests and responses are etcd's own protobuf types from `detcd-proto`, so the RPC layer
//! passes them through and the response header only needs the member's ids filled in.
//!
//! Contract of the [`Store`] (etcd's, including its edge cases):
//! - A fresh store is at revision 1; the first write creates revision 2.
//! - Keys: `range_end` empty = the single key `key`; `range_end == "\0"` = every key ≥ `key`;
//!   otherwise the half-open interval `[key, range_end)`, empty when `key >= range_end`.
//! - Reads at `revision <= 0` read the current revision; above it fail with
//!   [`Error::FutureRevision`]; below the compacted revision with [`Error::Compacted`].
//! - Requests are validated the way etcd's RPC layer validates them (see [`validate`]), so a
//!   request that would be refused by etcd is refused here with the same error and the store
//!   is left untouched; a write that fails changes nothing.
//!
//! [`Error::FutureRevision`]: crate::Error::FutureRevision
//! [`Error::Compacted`]: crate::Error::Compacted

mod history;
mod image;
pub mod key_history;
mod key_range;
mod revision;
mod store;
pub mod validate;

pub use key_range::KeyRange;
pub use revision::Revision;
pub use store::{Applied, KvHash, LeaseView, NoLeases, Store};
