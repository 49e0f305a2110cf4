//! A simulated file system per member ([`SimFs`]), under the member's real `FileStorage`: the
//! real WAL and snapshot format and the real recovery code run against simulated power loss.
//!
//! It keeps two views of every file and directory: what the process sees, and what survives a
//! power loss. Written bytes become durable at their file's sync; a file's name (created,
//! renamed, removed) at its directory's sync. The simulator can
//!
//! - arm a power failure at the k-th operation from now ([`SimFs::arm_power_failure`]): that
//!   operation and every later one do nothing and fail, as the process would see a dead machine;
//! - make the next sync fail ([`SimFs::fail_next_sync`]): nothing of it becomes durable (Linux
//!   may drop the dirty pages of a failed fsync), and the member must stop;
//! - cut the power ([`SimFs::power_loss`]): the visible view is rebuilt from the durable one;
//!   of each file's unsynced appended bytes a prefix may survive (a torn write), whose last
//!   bytes may read as zeros (a torn sector), and in which a bit may have flipped (a sector
//!   half-written when the power dropped reads back as garbage);
//! - flip a bit in synced data of an old WAL segment ([`SimFs::corrupt_old_wal_segment`]), which
//!   recovery must refuse to start from.
//!
//! Shared by clones, and outside the member's tasks: a killed and restarted member finds it again.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use detcd_server::disk::{Fs, FsFile};

use crate::schedule::SplitMix;

/// Of the bytes that survive a torn write, at most this many at its end read as zeros: the
/// sector the power cut in half, whose end never reached the platter.
pub const TORN_ZEROED_BYTES_MAX: usize = 16;

/// Whether a power loss may also flip a bit in the unsynced bytes that survive it.
///
/// What recovery makes of such a flip depends on where it lands. In the WAL's last record it
/// reads as a torn write: the record is cut off, and it was never acknowledged (it was not
/// synced). In an unsynced record followed by more records, nothing tells it from damage to
/// synced data, so etcd and detcd alike refuse to start, naming the file and offset, and an
/// operator replaces the member. Either is fine; serving the flipped data, or cutting off
/// synced data to get rid of it, is not. Bit flips in synced data are their own fault
/// ([`SimFs::corrupt_old_wal_segment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsyncedFlips {
    Never,
    /// One power loss in this many that leaves unsynced bytes flips one bit among them.
    OneIn(u64),
}

/// What a power loss did to a disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerLoss {
    /// Files that kept a torn part of their unsynced bytes.
    pub torn_files: usize,
    /// The bit flipped in unsynced bytes, if one was.
    pub flipped: Option<Flip>,
}

/// A bit flipped by a power loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flip {
    pub path: PathBuf,
    /// The flipped byte's offset in the file.
    pub offset: u64,
    /// The file's first byte that was never synced: the flip is at or after it.
    pub unsynced_from: u64,
}

#[derive(Debug, Clone, Default)]
struct Content {
    /// What the process reads.
    data: Vec<u8>,
    /// What a power loss leaves, at least.
    synced: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    /// Path to file id, as the process sees it.
    names: BTreeMap<PathBuf, u64>,
    /// Path to file id, as a power loss leaves it.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Names changed since their directory was last synced, with what they name now (`None`:
    /// removed). Every other path names the same file in `names` and `durable_names`, so a
    /// directory's sync only has to carry these over (WAL segments pile up in one directory:
    /// copying all its names at each segment's creation was a tenth of the simulation's time).
    unsynced_names: BTreeMap<PathBuf, Option<u64>>,
    files: BTreeMap<u64, Content>,
    next_file_id: u64,
    /// Raised at every power loss: handles opened before it are dead.
    boot: u64,
    /// Operations until the power fails (`Some(0)`: the next one fails).
    power_fails_in: Option<u64>,
    powered_off: bool,
    fail_next_sync: bool,
    /// Counters, for the run's report.
    operations: u64,
    syncs_failed: u64,
}

/// Cheap to clone; all clones are the same disk.
#[derive(Debug, Clone, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn power_failure() -> io::Error {
    io::Error::other("the power failed (simulated)")
}

impl SimFs {
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock means the run is over anyway.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The power fails at the `ops`-th file-system operation from now (0: the next one).
    pub fn arm_power_failure(&self, ops: u64) {
        self.state().power_fails_in = Some(ops);
    }

    /// The next sync (of a file or a directory) fails and makes nothing durable.
    pub fn fail_next_sync(&self) {
        self.state().fail_next_sync = true;
    }

    /// Takes back an armed power failure or sync failure that has not struck.
    pub fn disarm(&self) {
        let mut state = self.state();
        state.power_fails_in = None;
        state.fail_next_sync = false;
    }

    /// A new, empty disk in place of this one (an operator wiping a member's data dir before
    /// adding it back): every file gone, durably; handles opened before are dead.
    pub fn wipe(&self) {
        let mut state = self.state();
        let (boot, operations, syncs_failed) = (state.boot + 1, state.operations, state.syncs_failed);
        *state = State { boot, operations, syncs_failed, ..State::default() };
    }

    /// Whether an armed power failure happened (the member must be killed and power-cycled).
    pub fn powered_off(&self) -> bool {
        self.state().powered_off
    }

    pub fn operations(&self) -> u64 {
        self.state().operations
    }

    pub fn syncs_failed(&self) -> u64 {
        self.state().syncs_failed
    }

    /// Power loss: what was not synced is lost, except that a prefix of each file's unsynced
    /// appended bytes may survive, its last bytes possibly zeros, and (as `flips` says) one bit
    /// among those survivors of all files may be flipped. Disarms the faults; handles opened
    /// before are dead.
    pub fn power_loss(&self, seed: u64, flips: UnsyncedFlips) -> PowerLoss {
        let mut rng = SplitMix(seed);
        let mut state = self.state();
        state.boot += 1;
        state.power_fails_in = None;
        state.powered_off = false;
        state.fail_next_sync = false;
        state.names = state.durable_names.clone();
        state.unsynced_names.clear();
        let live: std::collections::BTreeSet<u64> = state.names.values().copied().collect();
        state.files.retain(|id, _| live.contains(id));
        let mut loss = PowerLoss::default();
        // (file id, first unsynced byte, end of the surviving bytes) of files with torn survivors.
        let mut survivors: Vec<(u64, usize, usize)> = Vec::new();
        for (&id, file) in state.files.iter_mut() {
            let synced_len = file.synced.len();
            // The unsynced writes: from the first byte that differs from the synced content to
            // the last (or to the end of a file that grew).
            let common = synced_len.min(file.data.len());
            let first =
                file.data[..common].iter().zip(&file.synced[..common]).position(|(a, b)| a != b).unwrap_or(common);
            let end = if file.data.len() > synced_len {
                file.data.len()
            } else {
                file.data[..common]
                    .iter()
                    .zip(&file.synced[..common])
                    .rposition(|(a, b)| a != b)
                    .map_or(first, |p| p + 1)
            };
            // Writes that only appended, or only filled zeros (a preallocated WAL segment's rest),
            // may survive in part: a disk writes a file's new sectors in order, some of them.
            let appended_only =
                end > first && file.data.len() >= synced_len && file.synced[first..].iter().all(|&b| b == 0);
            if appended_only && rng.range(0, 2) == 0 {
                let unsynced = end - first;
                let kept = rng.range(0, unsynced as u64 + 1) as usize;
                let mut data = file.synced.clone();
                data.resize(synced_len.max(first + kept), 0);
                data[first..first + kept].copy_from_slice(&file.data[first..first + kept]);
                let zeroed = rng.range(0, kept.min(TORN_ZEROED_BYTES_MAX) as u64 + 1) as usize;
                let kept_end = first + kept;
                data[kept_end - zeroed..kept_end].fill(0);
                if kept > 0 {
                    loss.torn_files += 1;
                    survivors.push((id, first, kept_end));
                }
                file.data = data;
            } else {
                file.data = file.synced.clone();
            }
            file.synced = file.data.clone();
        }
        let flip = match flips {
            UnsyncedFlips::OneIn(n) => !survivors.is_empty() && rng.range(0, n.max(1)) == 0,
            UnsyncedFlips::Never => false,
        };
        if flip {
            let (id, from, to) = survivors[rng.range(0, survivors.len() as u64) as usize];
            let at = rng.range(from as u64, to as u64) as usize;
            let bit = 1u8 << rng.range(0, 8);
            let file = state.files.get_mut(&id).expect("a survivor exists");
            debug_assert!(at >= from, "only bytes that were never synced flip");
            file.data[at] ^= bit;
            file.synced[at] ^= bit;
            let path = state.names.iter().find(|(_, &named)| named == id).map(|(p, _)| p.clone());
            let path = path.expect("surviving files are named");
            loss.flipped = Some(Flip { path, offset: at as u64, unsynced_from: from as u64 });
        }
        loss
    }

    /// Flips one bit in the synced part of a WAL segment that is not the newest (which recovery
    /// could take for a torn tail). Returns the file and offset, or None if there is no such
    /// segment with data.
    pub fn corrupt_old_wal_segment(&self, seed: u64) -> Option<(PathBuf, u64)> {
        let mut rng = SplitMix(seed);
        let mut state = self.state();
        let segments: Vec<(PathBuf, u64)> = state
            .durable_names
            .iter()
            .filter(|(path, _)| path.extension().is_some_and(|e| e == "wal"))
            .map(|(path, &id)| (path.clone(), id))
            .collect();
        // Names sort by sequence number (zero-padded hex): the last is the newest.
        let old = &segments[..segments.len().saturating_sub(1)];
        let candidates: Vec<&(PathBuf, u64)> =
            old.iter().filter(|(_, id)| state.files.get(id).is_some_and(|f| !f.synced.is_empty())).collect();
        if candidates.is_empty() {
            return None;
        }
        let (path, id) = candidates[rng.range(0, candidates.len() as u64) as usize].clone();
        let file = state.files.get_mut(&id).expect("a candidate exists");
        let at = rng.range(0, file.synced.len() as u64) as usize;
        let bit = 1 << rng.range(0, 8);
        file.synced[at] ^= bit;
        if at < file.data.len() {
            file.data[at] ^= bit;
        }
        Some((path, at as u64))
    }

    /// Counts an operation; fails it if the power is (or now goes) off.
    fn operate(state: &mut State) -> io::Result<()> {
        state.operations += 1;
        if state.powered_off {
            return Err(power_failure());
        }
        match state.power_fails_in {
            Some(0) => {
                state.powered_off = true;
                Err(power_failure())
            }
            Some(n) => {
                state.power_fails_in = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether this sync is the one that fails (and counts it).
    fn sync_fails(state: &mut State) -> bool {
        if std::mem::take(&mut state.fail_next_sync) {
            state.syncs_failed += 1;
            return true;
        }
        false
    }

    fn handle(&self, state: &State, id: u64, offset: u64) -> Box<dyn FsFile> {
        Box::new(OpenFile { fs: self.clone(), id, boot: state.boot, position: offset as usize })
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{}: no such file (simulated)", path.display()))
}

/// An open file of a [`SimFs`].
#[derive(Debug)]
struct OpenFile {
    fs: SimFs,
    id: u64,
    /// The boot it was opened in: after a power loss it is dead.
    boot: u64,
    position: usize,
}

impl OpenFile {
    fn with_file<T>(&mut self, op: impl FnOnce(&mut Content, &mut usize) -> T) -> io::Result<T> {
        let mut state = self.fs.state();
        if state.boot != self.boot {
            return Err(io::Error::other("file handle from before a power loss (simulated)"));
        }
        SimFs::operate(&mut state)?;
        let file = state.files.get_mut(&self.id).ok_or_else(|| io::Error::other("file removed (simulated)"))?;
        Ok(op(file, &mut self.position))
    }
}

impl FsFile for OpenFile {
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.with_file(|file, position| {
            let end = *position + data.len();
            if file.data.len() < end {
                file.data.resize(end, 0);
            }
            file.data[*position..end].copy_from_slice(data);
            *position = end;
        })
    }

    fn truncate_to(&mut self, len_bytes: u64) -> io::Result<()> {
        self.with_file(|file, position| {
            file.data.resize(len_bytes as usize, 0);
            *position = len_bytes as usize;
        })
    }

    fn preallocate(&mut self, len_bytes: u64) -> io::Result<()> {
        self.with_file(|file, _position| {
            if (file.data.len() as u64) < len_bytes {
                file.data.resize(len_bytes as usize, 0);
            }
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        let fs = self.fs.clone();
        let mut state = fs.state();
        if state.boot != self.boot {
            return Err(io::Error::other("file handle from before a power loss (simulated)"));
        }
        SimFs::operate(&mut state)?;
        if SimFs::sync_fails(&mut state) {
            return Err(io::Error::other("fsync failed (simulated)"));
        }
        let file = state.files.get_mut(&self.id).ok_or_else(|| io::Error::other("file removed (simulated)"))?;
        file.synced = file.data.clone();
        Ok(())
    }
}

impl Fs for SimFs {
    /// Directories are not modelled: every directory exists (the files' names carry the paths).
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        SimFs::operate(&mut self.state())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.state();
        SimFs::operate(&mut state)?;
        let id = match state.names.get(path) {
            Some(&id) => {
                state.files.get_mut(&id).expect("named files exist").data.clear();
                id
            }
            None => {
                let id = state.next_file_id;
                state.next_file_id += 1;
                state.files.insert(id, Content::default());
                state.names.insert(path.to_path_buf(), id);
                state.unsynced_names.insert(path.to_path_buf(), Some(id));
                id
            }
        };
        Ok(self.handle(&state, id, 0))
    }

    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn FsFile>> {
        let mut state = self.state();
        SimFs::operate(&mut state)?;
        let &id = state.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(self.handle(&state, id, offset))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.state();
        SimFs::operate(&mut state)?;
        let id = state.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(state.files[id].data.clone())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state();
        SimFs::operate(&mut state)?;
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        SimFs::operate(&mut state)?;
        let id = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), id);
        state.unsynced_names.insert(from.to_path_buf(), None);
        state.unsynced_names.insert(to.to_path_buf(), Some(id));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        SimFs::operate(&mut state)?;
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        state.unsynced_names.insert(path.to_path_buf(), None);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        SimFs::operate(&mut state)?;
        if SimFs::sync_fails(&mut state) {
            return Err(io::Error::other("fsync of a directory failed (simulated)"));
        }
        let in_dir: Vec<PathBuf> = state.unsynced_names.keys().filter(|p| p.parent() == Some(dir)).cloned().collect();
        for path in in_dir {
            match state.unsynced_names.remove(&path).expect("listed above") {
                Some(id) => state.durable_names.insert(path, id),
                None => state.durable_names.remove(&path),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The real `FileStorage` on a [`SimFs`] that loses power at every possible operation.

    use std::sync::Arc;

    use bytes::Bytes;
    use detcd_engine::node::Persist;
    use detcd_engine::raft::{Entry, HardState};
    use detcd_server::disk::{DiskError, FileStorage, Storage};

    use super::*;

    /// Small segments, so that rollovers and the deletion of old segments happen.
    const SEGMENT_BYTES_MAX: u64 = 600;

    fn storage(fs: &SimFs) -> Result<FileStorage, DiskError> {
        Ok(FileStorage::open_in(Arc::new(fs.clone()), Path::new("/data"))?.with_segment_bytes_max(SEGMENT_BYTES_MAX))
    }

    fn batch(index: u64, term: u64) -> Persist {
        let entry = Entry { index, term, data: Bytes::from(vec![index as u8; 40]), ..Entry::default() };
        let hard_state = HardState { term, vote: 1, commit: index.saturating_sub(1), ..HardState::default() };
        Persist { token: index, snapshot: None, entries: vec![entry], hard_state: Some(hard_state), must_sync: true }
    }

    /// Persists entries 2, 3, … one batch each until the power fails at operation
    /// `failing_op`; the last index acknowledged (0: none).
    fn persist_until_the_power_fails(fs: &SimFs, failing_op: u64) -> u64 {
        let mut s = storage(fs).expect("open");
        s.load().expect("load an empty disk");
        fs.arm_power_failure(failing_op);
        let mut acknowledged = 0;
        for index in 2..40 {
            if s.persist(&[batch(index, 1)]).is_err() {
                break;
            }
            acknowledged = index;
        }
        acknowledged
    }

    /// Every acknowledged persist survives a power failure at any operation; the one in flight
    /// survives whole or not at all; the restarted storage loads and goes on appending.
    #[test]
    fn acknowledged_entries_survive_a_power_failure_at_every_operation() {
        for failing_op in 0..120u64 {
            for seed in 0..4u64 {
                let fs = SimFs::new();
                let acknowledged = persist_until_the_power_fails(&fs, failing_op);
                fs.power_loss(seed * 1000 + failing_op, UnsyncedFlips::Never);
                let recovered = storage(&fs)
                    .and_then(|mut s| s.load())
                    .unwrap_or_else(|e| panic!("power failure at op {failing_op}, seed {seed}: {e}"));
                let last = recovered.entries.last().map_or(0, |e| e.index);
                assert!(
                    last == acknowledged || last == acknowledged + 1,
                    "op {failing_op}, seed {seed}: {acknowledged} acknowledged, {last} recovered"
                );
                let indexes: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
                assert_eq!(indexes, (2..=last).collect::<Vec<_>>(), "op {failing_op}: a gapless log");
                let mut again = storage(&fs).expect("reopen");
                again.load().expect("load again");
                again.persist(&[batch(last + 1, 2)]).expect("append after recovery");
            }
        }
    }

    /// A bit flips in the unsynced bytes a power loss left: recovery either cuts the damaged
    /// record off as torn (it was never acknowledged) or refuses to start, blaming a record that
    /// begins after the synced data. It never serves the flipped bytes, and never drops an
    /// acknowledged entry to get rid of them.
    #[test]
    fn a_flipped_bit_in_unsynced_bytes_is_cut_off_or_refused_never_served() {
        let (mut recovered_count, mut refused_count) = (0, 0);
        for failing_op in 0..120u64 {
            for seed in 0..4u64 {
                let fs = SimFs::new();
                let acknowledged = persist_until_the_power_fails(&fs, failing_op);
                let loss = fs.power_loss(seed * 1000 + failing_op, UnsyncedFlips::OneIn(1));
                let Some(flip) = loss.flipped else { continue };
                let case = format!("op {failing_op}, seed {seed}, {flip:?}");
                assert!(flip.offset >= flip.unsynced_from, "{case}: only unsynced bytes flip");
                match storage(&fs).and_then(|mut s| s.load()) {
                    Ok(recovered) => {
                        recovered_count += 1;
                        let indexes: Vec<u64> = recovered.entries.iter().map(|e| e.index).collect();
                        let last = indexes.last().copied().unwrap_or(0);
                        assert!(last == acknowledged || last == acknowledged + 1, "{case}: recovered up to {last}");
                        assert_eq!(indexes, (2..=last).collect::<Vec<_>>(), "{case}: a gapless log");
                        for e in &recovered.entries {
                            assert_eq!(
                                &e.data[..],
                                &[e.index as u8; 40][..],
                                "{case}: entry {} served flipped",
                                e.index
                            );
                        }
                    }
                    Err(DiskError::Corrupt { path, offset, .. }) => {
                        refused_count += 1;
                        assert_eq!(path, flip.path, "{case}: the refusal names the flipped file");
                        assert!(
                            (flip.unsynced_from..=flip.offset).contains(&offset),
                            "{case}: blamed the record at {offset}, which is not after the synced data"
                        );
                    }
                    Err(e) => panic!("{case}: {e}"),
                }
            }
        }
        assert!(
            recovered_count > 0 && refused_count > 0,
            "both outcomes: {recovered_count} cut off, {refused_count} refused"
        );
    }

    /// A bit flipped in a synced, older WAL segment: recovery refuses to start, naming the file.
    #[test]
    fn a_flipped_bit_in_an_old_segment_is_refused_as_corrupt() {
        for seed in 0..20u64 {
            let fs = SimFs::new();
            let mut s = storage(&fs).expect("open");
            s.load().expect("load");
            for index in 2..40 {
                s.persist(&[batch(index, 1)]).expect("persist");
            }
            let (path, offset) = fs.corrupt_old_wal_segment(seed).expect("several segments");
            match storage(&fs).and_then(|mut s| s.load()) {
                Err(DiskError::Corrupt { path: p, .. }) => assert_eq!(p, path, "seed {seed}, flip at {offset}"),
                other => panic!("seed {seed}: a flip at {} offset {offset} gave {other:?}", path.display()),
            }
        }
    }

    /// A failed sync makes the storage refuse further writes: the member must stop.
    #[test]
    fn after_a_failed_sync_the_storage_refuses_to_go_on() {
        let fs = SimFs::new();
        let mut s = storage(&fs).expect("open");
        s.load().expect("load");
        s.persist(&[batch(2, 1)]).expect("persist");
        fs.fail_next_sync();
        assert!(s.persist(&[batch(3, 1)]).is_err(), "the failed sync is reported");
        assert!(matches!(s.persist(&[batch(4, 1)]), Err(DiskError::Failed)), "and nothing more is written");
        fs.power_loss(7, UnsyncedFlips::Never);
        let recovered = storage(&fs).and_then(|mut s| s.load()).expect("recovers");
        assert!(recovered.entries.iter().any(|e| e.index == 2), "the acknowledged entry survives");
    }

    /// A saved identity is synced: it survives a power failure at any later operation, and a
    /// power failure while it is being saved leaves the old one or none, never a torn one.
    #[test]
    fn a_saved_identity_survives_power_failures() {
        use detcd_server::disk::Identity;
        let identity = Identity { member_id: 7, cluster_id: 9, founder: false };
        for failing_op in 0..8u64 {
            for seed in 0..4u64 {
                let fs = SimFs::new();
                let mut s = storage(&fs).expect("open");
                fs.arm_power_failure(failing_op);
                let saved = s.save_identity(&identity).is_ok();
                fs.power_loss(seed * 100 + failing_op, UnsyncedFlips::Never);
                let loaded = storage(&fs).and_then(|mut s| s.load_identity());
                match loaded {
                    Ok(Some(found)) => assert_eq!(found, identity, "op {failing_op}, seed {seed}"),
                    Ok(None) => assert!(!saved, "op {failing_op}, seed {seed}: an acknowledged identity was lost"),
                    Err(e) => panic!("op {failing_op}, seed {seed}: {e}"),
                }
            }
        }
    }
}
