//! Snapshot files (see the module docs of [`super`] for the format).

use std::path::Path;

use bytes::Bytes;
use detcd_engine::raft::{Snapshot, SnapshotMetadata};
use protobuf::Message as _;

use super::error::{DiskError, FileKind};
use super::fs::Fs;
use super::wal::parse_pair;

const MAGIC: &[u8; 8] = b"DTCDSNP1";
const CRC_OFFSET: usize = 8;
const METADATA_LENGTH_OFFSET: usize = 12;
const DATA_LENGTH_OFFSET: usize = 16;
const HEADER_BYTES: usize = 24;

/// `<term:016x>-<index:016x>.snap`.
pub(super) fn snapshot_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}.snap")
}

/// The (term, index) of a snapshot file name, if it is one.
pub(super) fn parse_snapshot_name(name: &str) -> Option<(u64, u64)> {
    parse_pair(name.strip_suffix(".snap")?)
}

/// Writes `snapshot` to the new file `path` and syncs it (the caller renames it into place).
pub(super) fn write_snapshot_file(fs: &dyn Fs, path: &Path, snapshot: &Snapshot) -> Result<(), DiskError> {
    let metadata = snapshot
        .get_metadata()
        .write_to_bytes()
        .map_err(|e| DiskError::Encode { what: "snapshot metadata", reason: e.to_string() })?;
    let metadata_bytes = u32::try_from(metadata.len())
        .map_err(|_| DiskError::Encode { what: "snapshot metadata", reason: format!("{} bytes", metadata.len()) })?;
    let data_bytes = snapshot.data.len() as u64;
    let mut header = [0u8; HEADER_BYTES];
    header[..CRC_OFFSET].copy_from_slice(MAGIC);
    header[METADATA_LENGTH_OFFSET..DATA_LENGTH_OFFSET].copy_from_slice(&metadata_bytes.to_le_bytes());
    header[DATA_LENGTH_OFFSET..].copy_from_slice(&data_bytes.to_le_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c_append(crc32c::crc32c(&header[METADATA_LENGTH_OFFSET..]), &metadata),
        &snapshot.data,
    );
    header[CRC_OFFSET..METADATA_LENGTH_OFFSET].copy_from_slice(&crc.to_le_bytes());

    let mut file = fs.create(path).map_err(|e| DiskError::io("create", path, e))?;
    // Three writes straight from the buffers: the state image may be gigabytes, not copied.
    file.write_all(&header)
        .and_then(|()| file.write_all(&metadata))
        .and_then(|()| file.write_all(&snapshot.data))
        .map_err(|e| DiskError::io("write", path, e))?;
    file.sync().map_err(|e| DiskError::io("fsync", path, e))
}

/// Reads and checks the snapshot file `path`, whose name says it holds (`term`, `index`).
pub(super) fn read_snapshot_file(fs: &dyn Fs, path: &Path, term: u64, index: u64) -> Result<Snapshot, DiskError> {
    let corrupt = |offset: usize, reason: String| DiskError::corrupt(FileKind::Snapshot, path, offset as u64, reason);
    let bytes = fs.read(path).map_err(|e| DiskError::io("read", path, e))?;
    if bytes.len() < HEADER_BYTES {
        return Err(corrupt(0, format!("{} bytes, shorter than the {HEADER_BYTES}-byte header", bytes.len())));
    }
    if &bytes[..CRC_OFFSET] != MAGIC {
        return Err(corrupt(0, "not a detcd snapshot file (bad magic)".into()));
    }
    let u32_at = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let crc = u32_at(CRC_OFFSET);
    let metadata_bytes = u32_at(METADATA_LENGTH_OFFSET) as u64;
    let mut data_length = [0u8; 8];
    data_length.copy_from_slice(&bytes[DATA_LENGTH_OFFSET..HEADER_BYTES]);
    let data_bytes = u64::from_le_bytes(data_length);
    let expected_bytes = (HEADER_BYTES as u64).checked_add(metadata_bytes).and_then(|n| n.checked_add(data_bytes));
    if expected_bytes != Some(bytes.len() as u64) {
        return Err(corrupt(
            METADATA_LENGTH_OFFSET,
            format!(
                "header declares {metadata_bytes} metadata and {data_bytes} data bytes, the file has {} after the header",
                bytes.len() - HEADER_BYTES
            ),
        ));
    }
    if crc32c::crc32c(&bytes[METADATA_LENGTH_OFFSET..]) != crc {
        return Err(corrupt(CRC_OFFSET, "CRC mismatch".into()));
    }
    // In bounds: the lengths add up to the file's size (checked above).
    let data_offset = HEADER_BYTES + metadata_bytes as usize;
    let metadata = SnapshotMetadata::parse_from_bytes(&bytes[HEADER_BYTES..data_offset])
        .map_err(|e| corrupt(HEADER_BYTES, format!("undecodable metadata: {e}")))?;
    if (metadata.term, metadata.index) != (term, index) {
        return Err(corrupt(
            HEADER_BYTES,
            format!("holds term {} index {}, its name says term {term} index {index}", metadata.term, metadata.index),
        ));
    }
    let mut snapshot = Snapshot::default();
    snapshot.set_metadata(metadata);
    // Shares the buffer just read rather than copying a possibly large image again.
    snapshot.data = Bytes::from(bytes).slice(data_offset..);
    Ok(snapshot)
}
