//! The member's identity file, `<data-dir>/member/identity`: the member id and cluster id it
//! was given when it founded or joined the cluster. A joining member learns both from the
//! cluster (neither can be computed from its flags: `MemberAdd` draws the id, and the cluster
//! id was fixed by the founders), so they must survive restarts: a restart reads them from
//! here, never from `--initial-cluster` again (etcd keeps them in its WAL's metadata).
//!
//! ```text
//! [8 bytes magic "DTCDID01"][u64 LE member id][u64 LE cluster id][u8 founder: 0 or 1]
//! [u32 LE CRC-32C of everything before it]
//! ```
//!
//! Written to `identity.tmp`, synced, renamed into place and its directory synced, before the
//! member sends or accepts any raft message.

use std::path::Path;

use super::error::{DiskError, FileKind};
use super::fs::Fs;

const MAGIC: &[u8; 8] = b"DTCDID01";
const FILE_BYTES: usize = 8 + 8 + 8 + 1 + 4;

/// Who this member is in which cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The member founded the cluster (its log starts from the founders' bootstrap snapshot);
    /// otherwise it joined an existing one.
    pub founder: bool,
}

pub(super) fn encode(identity: &Identity) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(FILE_BYTES);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&identity.member_id.to_le_bytes());
    bytes.extend_from_slice(&identity.cluster_id.to_le_bytes());
    bytes.push(identity.founder as u8);
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// The identity in `path`, `None` if there is no such file.
pub(super) fn read(fs: &dyn Fs, path: &Path) -> Result<Option<Identity>, DiskError> {
    let bytes = match fs.read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DiskError::io("read", path, e)),
    };
    let corrupt = |reason: &str| DiskError::corrupt(FileKind::Identity, path, 0, reason);
    if bytes.len() != FILE_BYTES {
        return Err(corrupt(&format!("{} bytes where {FILE_BYTES} were expected", bytes.len())));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("not an identity file (bad magic)"));
    }
    let crc = u32::from_le_bytes(bytes[FILE_BYTES - 4..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..FILE_BYTES - 4]) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let identity = Identity { member_id: u64_at(8), cluster_id: u64_at(16), founder: bytes[24] == 1 };
    if identity.member_id == 0 || identity.cluster_id == 0 || bytes[24] > 1 {
        return Err(corrupt("member id or cluster id 0, or a bad founder flag"));
    }
    Ok(Some(identity))
}
