//! WAL records: framing, encoding, and the scan of one segment (see the module docs of
//! [`super`] for the format).

use std::path::Path;

use detcd_engine::limits;
use detcd_engine::raft::{Entry, HardState};
use protobuf::Message as _;

use super::error::{DiskError, FileKind};

/// Length and CRC, before the type byte.
pub(super) const RECORD_HEADER_BYTES: usize = 8;

const TYPE_ENTRY: u8 = 1;
const TYPE_HARD_STATE: u8 = 2;
const TYPE_SNAPSHOT_MARKER: u8 = 3;

const SNAPSHOT_MARKER_PAYLOAD_BYTES: usize = 16;

/// One WAL record, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Record {
    Entry(Entry),
    HardState(HardState),
    /// A snapshot installed from the leader, at `index` and `term`: the log restarts after it.
    /// Its file was written before this record.
    SnapshotMarker {
        index: u64,
        term: u64,
    },
}

/// A record to write: [`Record`] borrowing what it holds.
#[derive(Debug, Clone, Copy)]
pub(super) enum RecordRef<'a> {
    Entry(&'a Entry),
    HardState(&'a HardState),
    SnapshotMarker { index: u64, term: u64 },
}

/// Appends `record`, framed, to `out`. On error `out` is left as it was.
pub(super) fn encode_record(record: RecordRef<'_>, out: &mut Vec<u8>) -> Result<(), DiskError> {
    let start = out.len();
    // Room for length and CRC, patched below once the payload is in place: encoding straight
    // into `out` spares a copy of every entry.
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    let encoded = match record {
        RecordRef::Entry(entry) => {
            out.push(TYPE_ENTRY);
            entry.write_to_vec(out).map_err(|e| ("raft entry", e.to_string()))
        }
        RecordRef::HardState(hs) => {
            out.push(TYPE_HARD_STATE);
            hs.write_to_vec(out).map_err(|e| ("raft hard state", e.to_string()))
        }
        RecordRef::SnapshotMarker { index, term } => {
            out.push(TYPE_SNAPSHOT_MARKER);
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&term.to_le_bytes());
            Ok(())
        }
    };
    if let Err((what, reason)) = encoded {
        out.truncate(start);
        return Err(DiskError::Encode { what, reason });
    }
    let body_bytes = out.len() - start - RECORD_HEADER_BYTES;
    if body_bytes > limits::WAL_RECORD_BYTES_MAX {
        out.truncate(start);
        return Err(DiskError::RecordTooLarge { bytes: body_bytes, bytes_max: limits::WAL_RECORD_BYTES_MAX });
    }
    let crc = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]);
    // Fits: bounded by WAL_RECORD_BYTES_MAX just above.
    let length = body_bytes as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What one segment holds.
#[derive(Debug)]
pub(super) struct Scanned {
    pub records: Vec<Record>,
    /// Bytes of whole, valid records: where the next record goes.
    pub valid_bytes: u64,
    /// Why the bytes after `valid_bytes` are not records (only ever set for the last segment).
    pub torn: Option<String>,
}

/// Decodes the segment `data` read from `path`. In the last segment (`is_last`) a torn final
/// record is tolerated and reported in [`Scanned::torn`]; anywhere else damage is an error.
pub(super) fn scan_segment(path: &Path, data: &[u8], is_last: bool) -> Result<Scanned, DiskError> {
    let corrupt = |offset: usize, reason: String| DiskError::corrupt(FileKind::Wal, path, offset as u64, reason);
    let mut records = Vec::new();
    let mut offset = 0;
    let torn = loop {
        let rest = &data[offset..];
        if rest.is_empty() {
            break None;
        }
        // A file system may leave the unsynced end of a file as zeros after a crash (and
        // preallocating writers leave them on purpose). Only the last segment may end that way:
        // the others were synced before their successor was created.
        if is_last && rest.iter().all(|&b| b == 0) {
            break Some(format!("{} trailing zero bytes", rest.len()));
        }
        if rest.len() < RECORD_HEADER_BYTES {
            if is_last {
                break Some(format!("record header cut short after {} of {RECORD_HEADER_BYTES} bytes", rest.len()));
            }
            return Err(corrupt(offset, format!("segment ends within a record header ({} bytes)", rest.len())));
        }
        let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        // A record always has its type byte; and a length beyond the bound is a damaged length
        // field, never a torn write (which cuts a correct length short, it does not grow it).
        if length == 0 {
            return Err(corrupt(offset, "record length 0".into()));
        }
        if length > limits::WAL_RECORD_BYTES_MAX {
            return Err(corrupt(
                offset,
                format!("record length {length} exceeds the limit of {}", limits::WAL_RECORD_BYTES_MAX),
            ));
        }
        let body = &rest[RECORD_HEADER_BYTES..];
        if body.len() < length {
            if is_last {
                break Some(format!("record of {length} bytes cut short after {} bytes", body.len()));
            }
            return Err(corrupt(offset, format!("segment ends within a record of {length} bytes")));
        }
        let (body, after) = body.split_at(length);
        if crc32c::crc32c(body) != crc {
            // The very last record of the log may be half-written (its sectors reached the disk
            // in part). If anything but zeros follows, the damage is to a record that was synced.
            if is_last && after.iter().all(|&b| b == 0) {
                break Some(format!("CRC mismatch in the last record ({length} bytes)"));
            }
            return Err(corrupt(offset, "CRC mismatch".into()));
        }
        records.push(decode_body(body).map_err(|reason| corrupt(offset, reason))?);
        offset += RECORD_HEADER_BYTES + length;
    };
    Ok(Scanned { records, valid_bytes: offset as u64, torn })
}

/// Decodes a record's type byte and payload (whose CRC matched).
fn decode_body(body: &[u8]) -> Result<Record, String> {
    let (&kind, payload) = body.split_first().ok_or("empty record")?;
    match kind {
        TYPE_ENTRY => {
            Entry::parse_from_bytes(payload).map(Record::Entry).map_err(|e| format!("undecodable entry: {e}"))
        }
        TYPE_HARD_STATE => HardState::parse_from_bytes(payload)
            .map(Record::HardState)
            .map_err(|e| format!("undecodable hard state: {e}")),
        TYPE_SNAPSHOT_MARKER => {
            let Ok(bytes) = <[u8; SNAPSHOT_MARKER_PAYLOAD_BYTES]>::try_from(payload) else {
                return Err(format!(
                    "snapshot marker of {} bytes, expected {SNAPSHOT_MARKER_PAYLOAD_BYTES}",
                    payload.len()
                ));
            };
            let (index, term) = bytes.split_at(8);
            Ok(Record::SnapshotMarker {
                index: u64::from_le_bytes(index.try_into().map_err(|_| "marker index")?),
                term: u64::from_le_bytes(term.try_into().map_err(|_| "marker term")?),
            })
        }
        other => Err(format!("unknown record type {other}")),
    }
}

/// `<seq:016x>-<first_index:016x>.wal`.
pub(super) fn segment_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}.wal")
}

/// The sequence number and first index of a segment file name, if it is one.
pub(super) fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    parse_pair(name.strip_suffix(".wal")?)
}

/// `<a:016x>-<b:016x>`, exactly (as written by `format!("{:016x}")`).
pub(super) fn parse_pair(stem: &str) -> Option<(u64, u64)> {
    let (a, b) = stem.split_once('-')?;
    let hex16 = |s: &str| {
        (s.len() == 16 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)))
            .then(|| u64::from_str_radix(s, 16).ok())
            .flatten()
    };
    Some((hex16(a)?, hex16(b)?))
}
