//! [`FileStorage`]: the [`Storage`] of a real member, in files (see the module docs of [`super`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use detcd_engine::limits;
use detcd_engine::node::{Persist, Recovered};
use detcd_engine::raft::{Entry, HardState, Snapshot};
use tracing::warn;

use super::error::DiskError;
use super::fs::{Fs, FsFile, StdFs};
use super::identity::{self, Identity};
use super::snap::{self, parse_snapshot_name, snapshot_name};
use super::wal::{self, parse_segment_name, segment_name, Record, RecordRef};
use super::Storage;

/// Where a member's files live, and the bounds it writes them with.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// Where the files are: the operating system's, or a simulated one.
    pub(super) fs: Arc<dyn Fs>,
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    /// A new segment is started before the current one would grow past this.
    segment_bytes_max: u64,
    /// Snapshot files kept; older ones are deleted.
    snapshot_files_kept: usize,
    /// Whether segments are extended to their full size when opened (see
    /// [`super::fs::FsFile::preallocate`]).
    preallocate: bool,
}

impl Layout {
    /// The length a segment is given when it is opened: its bound, up to etcd's 64 MiB.
    fn preallocated_bytes(&self) -> u64 {
        if self.preallocate {
            self.segment_bytes_max.min(limits::WAL_SEGMENT_BYTES_MAX)
        } else {
            0
        }
    }

    fn snapshot_path(&self, term: u64, index: u64) -> PathBuf {
        self.snap_dir.join(snapshot_name(term, index))
    }
}

/// A member's storage in `<data-dir>/member/{wal,snap}`.
///
/// Call [`Storage::load`] first: it reads what is durable, repairs a torn tail and opens the
/// last segment for appending. (`persist` and `save_snapshot` load on their own if it was not
/// called, and throw the result away.)
#[derive(Debug)]
pub struct FileStorage {
    data_dir: PathBuf,
    pub(super) layout: Layout,
    /// Set by `load`.
    pub(super) wal: Option<Wal>,
    /// Set once a write or sync failed: see [`DiskError::Failed`].
    failed: bool,
}

/// One WAL segment file.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) seq: u64,
    pub(super) path: PathBuf,
    /// The highest index of any entry record in the segment (including entries later
    /// overwritten): the segment may go once every entry in it lies before what must be kept.
    pub(super) max_entry_index: Option<u64>,
}

/// The last segment, open for appending.
#[derive(Debug)]
struct OpenSegment {
    file: Box<dyn FsFile>,
    len_bytes: u64,
    /// The hard state record a new segment starts with: a segment holding only that is never
    /// rolled over (a record too big for it gets it to itself).
    header_bytes: u64,
}

/// The write side, as of the last `load`.
#[derive(Debug)]
pub(super) struct Wal {
    /// Oldest first; consecutive sequence numbers.
    pub(super) segments: Vec<Segment>,
    /// The last of `segments`; none until the first record is written to an empty WAL.
    current: Option<OpenSegment>,
    /// The last hard state written: a new segment starts with it.
    hard_state: HardState,
    /// The index the next entry will most likely have, to name a new segment by.
    next_entry_index: u64,
    /// Snapshot files on disk as (index, term), oldest first.
    snapshots: Vec<(u64, u64)>,
}

impl FileStorage {
    /// Opens the storage in `data_dir`, creating `member/wal` and `member/snap` if absent.
    /// Nothing is read until [`Storage::load`].
    pub fn open(data_dir: &Path) -> Result<FileStorage, DiskError> {
        FileStorage::open_in(Arc::new(StdFs), data_dir)
    }

    /// [`FileStorage::open`] on the file system `fs` (the simulator's, in simulations).
    pub fn open_in(fs: Arc<dyn Fs>, data_dir: &Path) -> Result<FileStorage, DiskError> {
        let member_dir = data_dir.join("member");
        let layout = Layout {
            fs,
            wal_dir: member_dir.join("wal"),
            snap_dir: member_dir.join("snap"),
            segment_bytes_max: limits::WAL_SEGMENT_BYTES_MAX,
            snapshot_files_kept: limits::SNAPSHOT_FILES_KEPT,
            preallocate: true,
        };
        for dir in [&layout.wal_dir, &layout.snap_dir] {
            layout.fs.create_dir_all(dir).map_err(|e| DiskError::io("create directory", dir, e))?;
        }
        // A directory just created exists for sure only once its parent is synced.
        sync_dir(&layout, &member_dir)?;
        sync_dir(&layout, data_dir)?;
        if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(&layout, parent)?;
        }
        Ok(FileStorage { data_dir: data_dir.to_path_buf(), layout, wal: None, failed: false })
    }

    /// Overrides the segment size bound (tests use tiny segments to exercise rollover).
    pub fn with_segment_bytes_max(mut self, segment_bytes_max: u64) -> FileStorage {
        self.layout.segment_bytes_max = segment_bytes_max;
        self
    }

    /// Turns segment preallocation off (tests that check segment files byte for byte).
    pub fn without_preallocation(mut self) -> FileStorage {
        self.layout.preallocate = false;
        self
    }

    /// Overrides how many snapshot files are kept (at least one: the newest).
    pub fn with_snapshot_files_kept(mut self, snapshot_files_kept: usize) -> FileStorage {
        self.layout.snapshot_files_kept = snapshot_files_kept.max(1);
        self
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn wal_dir(&self) -> &Path {
        &self.layout.wal_dir
    }

    pub fn snap_dir(&self) -> &Path {
        &self.layout.snap_dir
    }

    fn identity_path(&self) -> PathBuf {
        self.data_dir.join("member").join("identity")
    }

    fn ensure_loaded(&mut self) -> Result<(), DiskError> {
        if self.wal.is_none() {
            self.load()?;
        }
        Ok(())
    }

    /// Runs a write: refused after an earlier failure, and any failure makes the storage
    /// unusable (see [`DiskError::Failed`]).
    fn write_with(&mut self, op: impl FnOnce(&Layout, &mut Wal) -> Result<(), DiskError>) -> Result<(), DiskError> {
        if self.failed {
            return Err(DiskError::Failed);
        }
        let result = self.ensure_loaded().and_then(|()| {
            let wal = self.wal.as_mut().expect("ensure_loaded sets the WAL or fails");
            op(&self.layout, wal)
        });
        if result.is_err() {
            self.failed = true;
            self.wal = None;
        }
        result
    }
}

impl Storage for FileStorage {
    fn load(&mut self) -> Result<Recovered, DiskError> {
        if self.failed {
            return Err(DiskError::Failed);
        }
        // Drop the open segment first: everything is read back from the files.
        self.wal = None;
        let (wal, recovered) = Wal::load(&self.layout)?;
        self.wal = Some(wal);
        Ok(recovered)
    }

    fn persist(&mut self, batch: &[Persist]) -> Result<(), DiskError> {
        self.write_with(|layout, wal| wal.persist(layout, batch))
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot, log_kept_from: u64) -> Result<(), DiskError> {
        self.write_with(|layout, wal| wal.save_snapshot(layout, snapshot, log_kept_from))
    }

    fn load_identity(&mut self) -> Result<Option<Identity>, DiskError> {
        identity::read(&*self.layout.fs, &self.identity_path())
    }

    fn save_identity(&mut self, identity: &Identity) -> Result<(), DiskError> {
        if self.failed {
            return Err(DiskError::Failed);
        }
        let (path, layout) = (self.identity_path(), &self.layout);
        let tmp = temp_path(&path);
        let written = (|| {
            let mut file = layout.fs.create(&tmp).map_err(|e| DiskError::io("create", &tmp, e))?;
            file.write_all(&identity::encode(identity)).map_err(|e| DiskError::io("write", &tmp, e))?;
            file.sync().map_err(|e| DiskError::io("fsync", &tmp, e))?;
            layout.fs.rename(&tmp, &path).map_err(|e| DiskError::io("rename into place", &path, e))?;
            sync_dir(layout, path.parent().expect("identity lives in member/"))
        })();
        // As for the WAL: after a failed write or sync nothing unsynced can be trusted.
        self.failed |= written.is_err();
        written
    }
}

impl Wal {
    /// Reads everything durable (see [`Storage::load`]).
    fn load(layout: &Layout) -> Result<(Wal, Recovered), DiskError> {
        let snapshots = list_snapshots(layout)?;
        let mut snapshot = None;
        for &(index, term) in snapshots.iter().rev() {
            match snap::read_snapshot_file(&*layout.fs, &layout.snapshot_path(term, index), term, index) {
                Ok(s) => {
                    snapshot = Some(s);
                    break;
                }
                // etcd, too, falls back to the newest snapshot it can read. Other errors (a
                // permission, an unreadable disk) are not the file's fault: report them.
                Err(e @ DiskError::Corrupt { .. }) => warn!(error = %e, "skipping corrupt snapshot file"),
                Err(e) => return Err(e),
            }
        }
        let (snapshot_index, snapshot_term) = snapshot.as_ref().map_or((0, 0), |s| {
            let meta = s.get_metadata();
            (meta.index, meta.term)
        });

        // Replay every segment, as the reference disk applies persists.
        let segment_files = list_segments(layout)?;
        let segment_count = segment_files.len();
        let mut segments = Vec::with_capacity(segment_count);
        let mut log: Vec<Entry> = Vec::new();
        let mut hard_state = HardState::default();
        let mut installed: Option<(u64, u64)> = None;
        let mut last_valid_bytes = 0;
        let mut last_torn = false;
        for (i, (seq, path)) in segment_files.into_iter().enumerate() {
            let is_last = i + 1 == segment_count;
            let data = layout.fs.read(&path).map_err(|e| DiskError::io("read", &path, e))?;
            let scanned = wal::scan_segment(&path, &data, is_last)?;
            let mut max_entry_index = None;
            for record in scanned.records {
                match record {
                    Record::Entry(entry) => {
                        max_entry_index = max_entry_index.max(Some(entry.index));
                        // The log is sorted by index, so this is the reference's `retain`.
                        let kept = log.partition_point(|e| e.index < entry.index);
                        log.truncate(kept);
                        log.push(entry);
                    }
                    Record::HardState(hs) => hard_state = hs,
                    Record::SnapshotMarker { index, term } => {
                        log.clear();
                        installed = Some((index, term));
                    }
                }
            }
            if data[scanned.valid_bytes as usize..].iter().all(|&b| b == 0) {
                // The preallocated rest of the segment (or zeros a crash left in its place):
                // nothing was lost, and the next record overwrites the zeros from where they begin.
                last_torn = false;
            } else if let Some(reason) = scanned.torn {
                warn!(
                    path = %path.display(),
                    offset = scanned.valid_bytes,
                    dropped_bytes = data.len() as u64 - scanned.valid_bytes,
                    %reason,
                    "truncating the torn tail of the WAL (an unsynced write cut short by a crash)"
                );
                last_torn = true;
            }
            last_valid_bytes = scanned.valid_bytes;
            segments.push(Segment { seq, path, max_entry_index });
        }

        if let Some((index, term)) = installed.filter(|&(index, _)| index > snapshot_index) {
            // Its file was synced before the marker was written, so it was lost or damaged
            // since; the log after the marker has no base to stand on.
            return Err(DiskError::inconsistent(
                &layout.snapshot_path(term, index),
                format!(
                    "the WAL installed snapshot {index} (term {term}) but that file is missing or corrupt \
                     (newest intact snapshot: {snapshot_index})"
                ),
            ));
        }
        if let Some(entry) = log.iter().find(|e| e.index == snapshot_index && snapshot_index > 0) {
            if entry.term != snapshot_term {
                // Only a snapshot installed from the leader can disagree with our log: its
                // file was written, then the crash came before its marker was synced. Installing
                // it empties the log, so do that now.
                warn!(
                    snapshot_index,
                    snapshot_term,
                    entry_term = entry.term,
                    "the newest snapshot does not continue the WAL's log (its marker was lost in a crash); \
                     dropping the WAL's entries"
                );
                log.clear();
            }
        }
        // Entries the snapshot covers: the node would skip them.
        let covered = log.partition_point(|e| e.index <= snapshot_index);
        log.drain(..covered);
        if let (Some(first), true) = (log.first(), snapshot.is_some()) {
            if first.index != snapshot_index + 1 {
                return Err(DiskError::inconsistent(
                    &layout.wal_dir,
                    format!(
                        "the WAL's log starts at entry {} but the newest intact snapshot ends at {snapshot_index}: \
                         the entries between went with WAL segments deleted after a newer snapshot",
                        first.index
                    ),
                ));
            }
        }

        let current = match segments.last() {
            Some(last) => Some(open_for_append(layout, &last.path, last_valid_bytes, last_torn)?),
            None => None,
        };
        let next_entry_index = log.last().map_or(snapshot_index, |e| e.index) + 1;
        let wal = Wal { segments, current, hard_state: hard_state.clone(), next_entry_index, snapshots };
        Ok((wal, Recovered { hard_state, snapshot, entries: log }))
    }

    fn persist(&mut self, layout: &Layout, batch: &[Persist]) -> Result<(), DiskError> {
        // Records for the current segment, written with one call at the end (or at a rollover).
        let mut pending = Vec::new();
        let mut sync = false;
        for p in batch {
            // raft-rs's must_sync is false only when nothing but the commit index changed: on a
            // crash we may lose that, and learn the commit index again from the leader.
            sync |= p.must_sync || p.snapshot.is_some() || !p.entries.is_empty();
            if let Some(snapshot) = &p.snapshot {
                // The file first: once the marker is on disk it must be there to stand on.
                self.write_snapshot(layout, snapshot)?;
                let meta = snapshot.get_metadata();
                self.append(layout, &mut pending, RecordRef::SnapshotMarker { index: meta.index, term: meta.term })?;
            }
            for entry in &p.entries {
                self.append(layout, &mut pending, RecordRef::Entry(entry))?;
            }
            if let Some(hs) = &p.hard_state {
                self.append(layout, &mut pending, RecordRef::HardState(hs))?;
                self.hard_state = hs.clone();
            }
        }
        self.flush(&mut pending)?;
        if sync {
            self.sync_current()?;
        }
        Ok(())
    }

    fn save_snapshot(&mut self, layout: &Layout, snapshot: &Snapshot, log_kept_from: u64) -> Result<(), DiskError> {
        let index = snapshot.get_metadata().index;
        // Keep the log the previous snapshot needs as well, so that if this snapshot file is
        // damaged later, `load` can fall back to that one (no snapshot at all counts as a
        // snapshot at 0). The log before `index + 1` is never needed with this snapshot.
        let previous_index = self.snapshots.iter().rev().map(|&(i, _)| i).find(|&i| i < index).unwrap_or(0);
        self.write_snapshot(layout, snapshot)?;
        let needed_from = log_kept_from.min(index + 1).min(previous_index + 1);
        self.delete_segments_before(layout, needed_from)
    }

    /// Appends `record` to `pending`, first rolling over to a new segment if it would not fit.
    fn append(&mut self, layout: &Layout, pending: &mut Vec<u8>, record: RecordRef<'_>) -> Result<(), DiskError> {
        let start = pending.len();
        wal::encode_record(record, pending)?;
        let record_bytes = (pending.len() - start) as u64;
        let roll = match &self.current {
            None => true,
            Some(current) => {
                let len_bytes = current.len_bytes + start as u64;
                len_bytes > current.header_bytes && len_bytes.saturating_add(record_bytes) > layout.segment_bytes_max
            }
        };
        if roll {
            let record_buf = pending.split_off(start);
            // The old segment is finished for good: cut off its preallocated rest (only the
            // last segment may end in zeros) and sync it before its successor exists, so that
            // only the last segment can ever hold a torn write.
            if self.current.is_some() {
                self.flush(pending)?;
                self.cut_preallocated_rest()?;
                self.sync_current()?;
            }
            let first_index = match record {
                RecordRef::Entry(entry) => entry.index,
                RecordRef::SnapshotMarker { index, .. } => index + 1,
                RecordRef::HardState(_) => self.next_entry_index,
            };
            self.create_segment(layout, first_index)?;
            *pending = record_buf;
        }
        match record {
            RecordRef::Entry(entry) => {
                let last = self.segments.last_mut().expect("a segment is open after a rollover");
                last.max_entry_index = last.max_entry_index.max(Some(entry.index));
                self.next_entry_index = entry.index + 1;
            }
            RecordRef::SnapshotMarker { index, .. } => self.next_entry_index = index + 1,
            RecordRef::HardState(_) => {}
        }
        Ok(())
    }

    /// Writes `pending` to the current segment (no sync).
    fn flush(&mut self, pending: &mut Vec<u8>) -> Result<(), DiskError> {
        if pending.is_empty() {
            return Ok(());
        }
        let (Some(current), Some(segment)) = (self.current.as_mut(), self.segments.last()) else {
            unreachable!("records are appended only once a segment is open");
        };
        current.file.write_all(pending).map_err(|e| DiskError::io("write", &segment.path, e))?;
        current.len_bytes += pending.len() as u64;
        pending.clear();
        Ok(())
    }

    /// Cuts the current segment to the records written in it (its preallocated zeros go).
    fn cut_preallocated_rest(&mut self) -> Result<(), DiskError> {
        if let (Some(current), Some(segment)) = (self.current.as_mut(), self.segments.last()) {
            current.file.truncate_to(current.len_bytes).map_err(|e| DiskError::io("truncate", &segment.path, e))?;
        }
        Ok(())
    }

    fn sync_current(&mut self) -> Result<(), DiskError> {
        #[cfg(feature = "canary")]
        if detcd_engine::canary::on(detcd_engine::canary::Canary::UnsyncedAck) {
            return Ok(());
        }
        if let (Some(current), Some(segment)) = (self.current.as_mut(), self.segments.last()) {
            current.file.sync().map_err(|e| DiskError::io("fsync", &segment.path, e))?;
        }
        Ok(())
    }

    /// Creates the next segment, starting with the current hard state, and makes it current.
    fn create_segment(&mut self, layout: &Layout, first_index: u64) -> Result<(), DiskError> {
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let path = layout.wal_dir.join(segment_name(seq, first_index));
        let tmp = temp_path(&path);
        let mut header = Vec::new();
        if self.hard_state != HardState::default() {
            wal::encode_record(RecordRef::HardState(&self.hard_state), &mut header)?;
        }
        let mut file = layout.fs.create(&tmp).map_err(|e| DiskError::io("create", &tmp, e))?;
        file.write_all(&header).map_err(|e| DiskError::io("write", &tmp, e))?;
        file.preallocate(layout.preallocated_bytes()).map_err(|e| DiskError::io("preallocate", &tmp, e))?;
        file.sync().map_err(|e| DiskError::io("fsync", &tmp, e))?;
        layout.fs.rename(&tmp, &path).map_err(|e| DiskError::io("rename into place", &path, e))?;
        sync_dir(layout, &layout.wal_dir)?;
        self.segments.push(Segment { seq, path, max_entry_index: None });
        self.current = Some(OpenSegment { file, len_bytes: header.len() as u64, header_bytes: header.len() as u64 });
        Ok(())
    }

    /// Writes a snapshot file atomically and deletes the oldest beyond the number kept.
    fn write_snapshot(&mut self, layout: &Layout, snapshot: &Snapshot) -> Result<(), DiskError> {
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let path = layout.snapshot_path(term, index);
        let tmp = temp_path(&path);
        snap::write_snapshot_file(&*layout.fs, &tmp, snapshot)?;
        layout.fs.rename(&tmp, &path).map_err(|e| DiskError::io("rename into place", &path, e))?;
        sync_dir(layout, &layout.snap_dir)?;
        if let Err(at) = self.snapshots.binary_search(&(index, term)) {
            self.snapshots.insert(at, (index, term));
        }
        let excess = self.snapshots.len().saturating_sub(layout.snapshot_files_kept);
        if excess > 0 {
            // Oldest first, but never the file just written (should an older index ever come).
            let doomed: Vec<(u64, u64)> =
                self.snapshots.iter().copied().filter(|&s| s != (index, term)).take(excess).collect();
            for &(i, t) in &doomed {
                remove_file(layout, &layout.snapshot_path(t, i))?;
                self.snapshots.retain(|&s| s != (i, t));
            }
            sync_dir(layout, &layout.snap_dir)?;
        }
        Ok(())
    }

    /// Deletes the oldest segments while every entry in them lies before `index` — never the
    /// current one. Replaying the rest gives the same log from `index` on and the same hard
    /// state (every segment starts with the hard state of its time).
    pub(super) fn delete_segments_before(&mut self, layout: &Layout, index: u64) -> Result<(), DiskError> {
        let closed = self.segments.len().saturating_sub(1);
        let doomed = self.segments[..closed].iter().take_while(|s| s.max_entry_index.is_none_or(|m| m < index)).count();
        if doomed == 0 {
            return Ok(());
        }
        // Oldest first, so that a crash in between leaves a consecutive run of segments.
        for segment in self.segments.drain(..doomed) {
            remove_file(layout, &segment.path)?;
        }
        sync_dir(layout, &layout.wal_dir)
    }
}

/// Opens the last segment to append after its `valid_bytes`, cutting off a torn tail first.
fn open_for_append(layout: &Layout, path: &Path, valid_bytes: u64, torn: bool) -> Result<OpenSegment, DiskError> {
    let mut file = layout.fs.open_at(path, valid_bytes).map_err(|e| DiskError::io("open", path, e))?;
    if torn {
        file.truncate_to(valid_bytes).map_err(|e| DiskError::io("truncate", path, e))?;
        // The repair must be durable before anything is appended after it.
        file.sync().map_err(|e| DiskError::io("fsync", path, e))?;
    }
    file.preallocate(layout.preallocated_bytes()).map_err(|e| DiskError::io("preallocate", path, e))?;
    // A segment reopened after a restart: whatever it starts with, it holds more than a header.
    Ok(OpenSegment { file, len_bytes: valid_bytes, header_bytes: 0 })
}

/// The segments in `wal_dir` as (seq, path), oldest first; removes leftover temporary files.
fn list_segments(layout: &Layout) -> Result<Vec<(u64, PathBuf)>, DiskError> {
    let mut segments = Vec::new();
    for (name, path) in list_dir(layout, &layout.wal_dir)? {
        match parse_segment_name(&name) {
            Some((seq, _first_index)) => segments.push((seq, path)),
            None => warn!(path = %path.display(), "ignoring a file that is not a WAL segment"),
        }
    }
    segments.sort();
    for pair in segments.windows(2) {
        let ((before, _), (after, path)) = (&pair[0], &pair[1]);
        if before.checked_add(1) != Some(*after) {
            return Err(DiskError::inconsistent(
                path,
                format!("WAL segment {after:016x} follows segment {before:016x}: the segments between are missing"),
            ));
        }
    }
    Ok(segments)
}

/// The snapshot files in `snap_dir` as (index, term), oldest first; removes leftover temporary
/// files.
fn list_snapshots(layout: &Layout) -> Result<Vec<(u64, u64)>, DiskError> {
    let mut snapshots = Vec::new();
    for (name, path) in list_dir(layout, &layout.snap_dir)? {
        match parse_snapshot_name(&name) {
            Some((term, index)) => snapshots.push((index, term)),
            None => warn!(path = %path.display(), "ignoring a file that is not a snapshot"),
        }
    }
    snapshots.sort();
    Ok(snapshots)
}

/// The files in `dir` as (name, path), after deleting `*.tmp` files: writes a crash cut short,
/// never renamed into place, so nothing depends on them.
fn list_dir(layout: &Layout, dir: &Path) -> Result<Vec<(String, PathBuf)>, DiskError> {
    let mut files = Vec::new();
    let mut removed = false;
    let mut names = layout.fs.list(dir).map_err(|e| DiskError::io("list", dir, e))?;
    // Directory order is the file system's whim: sorted, warnings and removals are repeatable.
    names.sort();
    for name in names {
        let path = dir.join(&name);
        if name.ends_with(".tmp") {
            warn!(path = %path.display(), "removing a temporary file left by an interrupted write");
            remove_file(layout, &path)?;
            removed = true;
        } else {
            files.push((name, path));
        }
    }
    if removed {
        sync_dir(layout, dir)?;
    }
    Ok(files)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn remove_file(layout: &Layout, path: &Path) -> Result<(), DiskError> {
    match layout.fs.remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DiskError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
fn sync_dir(layout: &Layout, dir: &Path) -> Result<(), DiskError> {
    layout.fs.sync_dir(dir).map_err(|e| DiskError::io("fsync directory", dir, e))
}
