use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Which kind of file a [`DiskError::Corrupt`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Wal,
    Snapshot,
    Identity,
}

/// Why the disk cannot be read or written.
#[derive(Debug)]
pub enum DiskError {
    /// An operating-system call failed: `op` on `path`.
    Io { op: &'static str, path: PathBuf, source: io::Error },
    /// Bytes that are not what detcd wrote and are not a torn tail: a checksum mismatch, an
    /// undecodable record, a truncated file where none may be. The member must not start from
    /// this disk; an operator restores it (or removes the member and lets it rejoin).
    Corrupt { kind: FileKind, path: PathBuf, offset: u64, reason: String },
    /// Files that are each intact but do not fit together: a segment missing from the sequence,
    /// a log that no longer reaches back to the only intact snapshot.
    Inconsistent { path: PathBuf, reason: String },
    /// A record larger than `limits::WAL_RECORD_BYTES_MAX`; nothing of the batch from this
    /// record on was written.
    RecordTooLarge { bytes: usize, bytes_max: usize },
    /// A message protobuf refused to encode.
    Encode { what: &'static str, reason: String },
    /// An earlier write or sync failed. After a failed fsync the page cache may hold data that
    /// will never reach the disk (and may already have been dropped), so nothing written since
    /// the last good sync can be trusted: the member must stop and recover from what is durable.
    Failed,
}

impl DiskError {
    pub(super) fn io(op: &'static str, path: &Path, source: io::Error) -> DiskError {
        DiskError::Io { op, path: path.to_path_buf(), source }
    }

    pub(super) fn corrupt(kind: FileKind, path: &Path, offset: u64, reason: impl Into<String>) -> DiskError {
        DiskError::Corrupt { kind, path: path.to_path_buf(), offset, reason: reason.into() }
    }

    pub(super) fn inconsistent(path: &Path, reason: impl Into<String>) -> DiskError {
        DiskError::Inconsistent { path: path.to_path_buf(), reason: reason.into() }
    }
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskError::Io { op, path, source } => write!(f, "cannot {op} {}: {source}", path.display()),
            DiskError::Corrupt { kind: FileKind::Wal, path, offset, reason } => {
                write!(f, "corrupt WAL record in {} at offset {offset}: {reason}", path.display())
            }
            DiskError::Corrupt { kind: FileKind::Snapshot, path, offset, reason } => {
                write!(f, "corrupt snapshot file {} at offset {offset}: {reason}", path.display())
            }
            DiskError::Corrupt { kind: FileKind::Identity, path, reason, .. } => {
                write!(f, "corrupt identity file {}: {reason}", path.display())
            }
            DiskError::Inconsistent { path, reason } => write!(f, "inconsistent data in {}: {reason}", path.display()),
            DiskError::RecordTooLarge { bytes, bytes_max } => {
                write!(f, "WAL record of {bytes} bytes exceeds the limit of {bytes_max} bytes")
            }
            DiskError::Encode { what, reason } => write!(f, "cannot encode {what}: {reason}"),
            DiskError::Failed => {
                write!(f, "an earlier write or sync failed; the storage must be reopened from what is durable")
            }
        }
    }
}

impl std::error::Error for DiskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiskError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
