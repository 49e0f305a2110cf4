//! The durable storage of one member, etcd-style: a write-ahead log of CRC-framed records in
//! segment files, and snapshot files of the applied state.
//!
//! The driver talks to a [`Storage`]; production uses [`FileStorage`] on the operating system's
//! files ([`StdFs`]), the simulator the same [`FileStorage`] on a simulated [`Fs`] that loses
//! power. Either must behave like the harness's reference disk
//! (`detcd_engine::harness::Disk`): what [`Storage::load`] returns after a restart is what
//! applying every completed [`Storage::persist`] and [`Storage::save_snapshot`], in order, to
//! that reference gives — except that log entries the snapshot covers are left out (the node
//! skips them anyway).
//!
//! # Layout
//!
//! ```text
//! <data-dir>/member/wal/<seq:016x>-<first_index:016x>.wal    WAL segments, replayed in seq order
//! <data-dir>/member/snap/<term:016x>-<index:016x>.snap       snapshot files, newest by index wins
//! <data-dir>/member/identity                                 member id and cluster id (see identity.rs)
//! ```
//!
//! `seq` numbers segments consecutively from 0; a gap means a segment went missing and recovery
//! refuses. `first_index` is the index of the first entry the segment was opened for (for
//! people reading a directory listing; recovery does not rely on it). Files are created as
//! `<name>.tmp`, synced, renamed into place and their directory synced, so a crash never leaves a
//! half-written file under a real name; stray `.tmp` files are deleted on [`Storage::load`].
//!
//! # WAL records
//!
//! ```text
//! [u32 LE length][u32 LE CRC-32C of type and payload][u8 type][payload]
//! ```
//!
//! `length` counts the type byte and the payload. Types:
//!
//! | type | payload | replayed as |
//! |---|---|---|
//! | 1 entry | a raft `Entry` (protobuf) | replaces the entries at or after its index, then is appended |
//! | 2 hard state | a raft `HardState` (protobuf) | replaces the hard state |
//! | 3 snapshot marker | `[u64 LE index][u64 LE term]` | a snapshot installed from the leader: the log is emptied |
//!
//! A persist is written as its records in the order the node's contract applies them (snapshot
//! marker, entries, hard state), so any prefix of the records of a batch is a state the node
//! could have been in: the torn tail of a crash loses only whole, unacknowledged records. Every
//! segment begins with the hard state current when it was opened, so deleting older segments
//! never loses the hard state. A segment is closed (synced) before the next one is created.
//!
//! Recovery truncates a torn **last** record of the **last** segment (header or payload cut
//! short, a CRC mismatch in the very last record, trailing zeros) and logs a warning, as etcd's
//! WAL repair does: that record was never synced, so nobody was told it was durable. Any other
//! damage — a CRC mismatch followed by more data, an undecodable record, a short non-last
//! segment — is [`DiskError::Corrupt`], naming the file and byte offset, and the member refuses
//! to start: silently dropping synced records could lose acknowledged writes or votes.
//!
//! # Snapshot files
//!
//! ```text
//! [8 bytes magic "DTCDSNP1"][u32 LE CRC-32C of everything after it][u32 LE metadata length]
//! [u64 LE data length][SnapshotMetadata (protobuf)][data: the state image]
//! ```
//!
//! The data is written raw rather than inside a protobuf `Snapshot` so that a multi-gigabyte
//! state image is neither copied once more to be encoded nor limited by protobuf's 2 GiB
//! message size. A snapshot installed from the leader is written (and synced) *before* its
//! marker goes into the WAL. The newest [`SNAPSHOT_FILES_KEPT`] files are kept.
//!
//! [`Storage::load`] uses the newest snapshot file that is intact; a corrupt one is skipped with
//! a warning. To make that fallback useful, [`Storage::save_snapshot`] keeps the WAL needed to
//! recover from the *previous* snapshot too (see there), one snapshot interval more than
//! `log_kept_from` alone would keep.
//!
//! [`SNAPSHOT_FILES_KEPT`]: detcd_engine::limits::SNAPSHOT_FILES_KEPT

mod error;
mod file;
pub mod fs;
mod identity;
mod snap;
mod wal;

#[cfg(test)]
mod tests;

pub use error::{DiskError, FileKind};
pub use file::FileStorage;
pub use fs::{Fs, FsFile, StdFs};
pub use identity::Identity;

use detcd_engine::node::{Persist, Recovered};
use detcd_engine::raft::Snapshot;

/// A member's durable storage, as the driver uses it. Calls are made one at a time — from the
/// driver's loop, or for a persist that syncs from a blocking thread the loop takes the storage
/// back from before its next call; the node's outputs are carried out in the order it gave them.
pub trait Storage: Send {
    /// Everything durable, for `Node::new`: the hard state, the newest intact snapshot, and the
    /// log entries after it. Repairs a torn tail (see the module docs). Call it before the
    /// first `persist` or `save_snapshot`.
    fn load(&mut self) -> Result<Recovered, DiskError>;

    /// Writes the persists in order and makes them durable with ONE sync at the end (group
    /// commit); when none has `must_sync` and none carries entries or a snapshot, the sync may
    /// be skipped. Only once this returns `Ok` may the driver call `handle_persisted` for the
    /// persists' tokens. After an error the storage is unusable: the data written since the
    /// last sync may or may not be on disk, and the member must stop.
    fn persist(&mut self, batch: &[Persist]) -> Result<(), DiskError>;

    /// The node's own snapshot: written atomically; afterwards WAL segments wholly before
    /// `log_kept_from` may go.
    fn save_snapshot(&mut self, snapshot: &Snapshot, log_kept_from: u64) -> Result<(), DiskError>;

    /// The member's [`Identity`] as last saved; `None` for a data dir that never had one.
    fn load_identity(&mut self) -> Result<Option<Identity>, DiskError>;

    /// Saves the member's identity durably (synced) before it returns `Ok`.
    fn save_identity(&mut self, identity: &Identity) -> Result<(), DiskError>;
}
