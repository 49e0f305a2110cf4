//! The raft side of a member: raft-rs's `RawNode` over [`LogStore`], our in-memory view of the
//! raft log.
//!
//! raft-rs reads the log through its `Storage` trait while the driver makes it durable: the node
//! appends to the [`LogStore`] *and* emits a `Persist` output with the same data; raft is only
//! told an append is durable (`on_persist_ready`) when the driver answers `handle_persisted`.
//! So raft-rs never counts an entry as persisted — for elections and for commitment — before
//! it is on disk, while it can still read it back right away.

mod log_store;

pub use log_store::LogStore;
pub use raft::eraftpb::{
    ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata,
};
pub use raft::StateRole;

/// A raft-rs logger that drops everything. raft-rs logs through slog; a member's own tracing
/// covers what matters (elections, leader changes) from the soft state.
pub(crate) fn discard_logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}
