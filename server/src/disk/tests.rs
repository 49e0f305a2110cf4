//! Scenarios for [`FileStorage`], each in a fresh directory, checked against the harness's
//! reference disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use detcd_engine::node::{Persist, Recovered};
use detcd_engine::raft::{Entry, HardState, Snapshot};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::wal::{parse_segment_name, scan_segment, Record};
use super::{DiskError, FileKind, FileStorage, Storage};

/// A directory under the system's temp dir, unique to one test run, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("detcd-disk-{test}-{}-{nanos}-{unique}", std::process::id()));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The reference semantics: `detcd_engine::harness::Disk`, what the in-process cluster's disk
/// holds. `recovered` leaves out the entries the snapshot covers, as `Storage::load` does (the
/// node skips them either way).
#[derive(Debug, Clone, Default)]
struct Reference(detcd_engine::harness::Disk);

impl Reference {
    fn apply(&mut self, p: &Persist) {
        self.0.apply(p);
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot, log_kept_from: u64) {
        self.0.save_snapshot(snapshot, log_kept_from);
    }

    fn snapshot_index(&self) -> u64 {
        self.0.snapshot.as_ref().map_or(0, |s| s.get_metadata().index)
    }

    fn last_index(&self) -> u64 {
        self.0.entries.last().map_or(self.snapshot_index(), |e| e.index)
    }

    fn recovered(&self) -> Recovered {
        let covered = self.snapshot_index();
        let mut recovered = self.0.recovered();
        recovered.entries.retain(|e| e.index > covered);
        recovered
    }
}

fn entry(index: u64, term: u64, data_bytes: usize) -> Entry {
    Entry { index, term, data: Bytes::from(vec![(index % 251) as u8; data_bytes]), ..Entry::default() }
}

fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes.map(|i| entry(i, term, 16)).collect()
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit, ..HardState::default() }
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut s = Snapshot { data: Bytes::copy_from_slice(data), ..Snapshot::default() };
    let meta = s.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.mut_conf_state().voters = vec![1, 2, 3];
    s
}

fn persist(entries: Vec<Entry>, hs: Option<HardState>) -> Persist {
    Persist { token: 0, snapshot: None, entries, hard_state: hs, must_sync: true }
}

fn assert_same(actual: &Recovered, expected: &Recovered, context: &str) {
    assert_eq!(actual.hard_state, expected.hard_state, "hard state ({context})");
    assert_eq!(actual.snapshot, expected.snapshot, "snapshot ({context})");
    let indexes = |r: &Recovered| r.entries.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>();
    assert_eq!(indexes(actual), indexes(expected), "entries ({context})");
    assert_eq!(actual.entries, expected.entries, "entry contents ({context})");
}

/// Storage without preallocated segments: most tests check segment files byte for byte.
fn open(dir: &TempDir) -> FileStorage {
    open_with(dir, false)
}

/// Storage as production opens it (`preallocate`), or without preallocated segments.
fn open_with(dir: &TempDir, preallocate: bool) -> FileStorage {
    let storage = FileStorage::open(dir.path()).expect("open");
    if preallocate {
        storage
    } else {
        storage.without_preallocation()
    }
}

/// Opens, loads and checks against `expected`; returns the storage, ready to append.
fn reopen_and_check(dir: &TempDir, segment_bytes_max: u64, expected: &Recovered, context: &str) -> FileStorage {
    reopen_and_check_with(dir, segment_bytes_max, expected, context, false)
}

fn reopen_and_check_with(
    dir: &TempDir,
    segment_bytes_max: u64,
    expected: &Recovered,
    context: &str,
    preallocate: bool,
) -> FileStorage {
    let mut storage = open_with(dir, preallocate).with_segment_bytes_max(segment_bytes_max);
    let recovered = storage.load().unwrap_or_else(|e| panic!("load ({context}): {e}"));
    assert_same(&recovered, expected, context);
    storage
}

/// The WAL segment files, oldest first.
fn segment_files(storage: &FileStorage) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(storage.wal_dir())
        .expect("list wal")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    files
}

fn snapshot_files(storage: &FileStorage) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        fs::read_dir(storage.snap_dir()).expect("list snap").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

fn flip_bit(path: &Path, offset: u64, bit: u8) {
    let mut bytes = fs::read(path).expect("read");
    bytes[offset as usize] ^= 1 << bit;
    fs::write(path, bytes).expect("write");
}

// ---- scenarios --------------------------------------------------------------------------

#[test]
fn an_empty_directory_is_a_new_member() {
    let dir = TempDir::new("empty");
    let mut storage = open(&dir);
    assert_same(&storage.load().expect("load"), &Recovered::default(), "empty");
    assert!(dir.path().join("member/wal").is_dir() && dir.path().join("member/snap").is_dir());
    assert!(segment_files(&storage).is_empty(), "nothing is written until something is persisted");
}

/// Randomized persists, snapshots of both kinds, reopens: what `load` gives is always what
/// the reference disk holds. Segments are preallocated (as in production) or not, and a reopen
/// may switch: either kind of WAL reads back whole under either setting.
#[test]
fn round_trip_matches_the_reference_disk() {
    // What the runs went through, all seeds together: the scenario is only as good as its mix.
    let (mut installs, mut overwrites, mut own_snapshots, mut reopens, mut deletions) = (0, 0, 0, 0, 0);
    for seed in 0..6u64 {
        let dir = TempDir::new(&format!("round-trip-{seed}"));
        let mut rng = StdRng::seed_from_u64(seed);
        let segment_bytes_max = rng.gen_range(200..3000);
        // Its own generator, so that the preallocation draws leave the scenario's as it was.
        let mut preallocation_rng = StdRng::seed_from_u64(seed + 1000);
        let mut storage = open_with(&dir, preallocation_rng.gen_bool(0.5))
            .with_segment_bytes_max(segment_bytes_max)
            .with_snapshot_files_kept(3);
        assert_same(&storage.load().expect("load"), &Recovered::default(), "start");
        let mut reference = Reference::default();
        let mut term = 1;
        let mut token = 0;
        for step in 0..400 {
            let context = format!("seed {seed}, step {step}");
            match rng.gen_range(0..100) {
                0..=69 => {
                    let batch: Vec<Persist> = (0..rng.gen_range(1..=3))
                        .map(|_| {
                            token += 1;
                            let p = random_persist(&mut rng, &reference, &mut term, token);
                            installs += u32::from(p.snapshot.is_some());
                            overwrites += u32::from(
                                p.snapshot.is_none()
                                    && p.entries.first().is_some_and(|e| e.index <= reference.last_index()),
                            );
                            reference.apply(&p);
                            p
                        })
                        .collect();
                    storage.persist(&batch).unwrap_or_else(|e| panic!("persist ({context}): {e}"));
                }
                70..=79 => {
                    // The node's own snapshot: at an entry it holds, after the last snapshot.
                    let from = reference.snapshot_index() + 1;
                    let Some(at) =
                        reference.0.entries.iter().filter(|e| e.index >= from).map(|e| (e.index, e.term)).last()
                    else {
                        continue;
                    };
                    let (index, term_at) = if rng.gen_bool(0.5) {
                        at
                    } else {
                        let pick = rng.gen_range(from..=at.0);
                        let e = reference.0.entries.iter().find(|e| e.index == pick).expect("contiguous log");
                        (e.index, e.term)
                    };
                    let s = snapshot(index, term_at, format!("image at {index}").as_bytes());
                    let log_kept_from = index.saturating_sub(rng.gen_range(0..12)) + 1;
                    storage.save_snapshot(&s, log_kept_from).unwrap_or_else(|e| panic!("save ({context}): {e}"));
                    reference.save_snapshot(&s, log_kept_from);
                    own_snapshots += 1;
                }
                80..=89 => {
                    reopens += 1;
                    drop(storage);
                    let preallocate = preallocation_rng.gen_bool(0.5);
                    storage =
                        reopen_and_check_with(&dir, segment_bytes_max, &reference.recovered(), &context, preallocate)
                            .with_snapshot_files_kept(3);
                }
                _ => assert_same(&storage.load().expect("load"), &reference.recovered(), &context),
            }
        }
        assert!(segment_files(&storage).len() > 1, "seed {seed}: the WAL rolled over");
        deletions += u32::from(storage.wal.as_ref().expect("loaded").segments[0].seq > 0);
        drop(storage);
        reopen_and_check(&dir, segment_bytes_max, &reference.recovered(), &format!("seed {seed}, end"));
    }
    let mix = [installs, overwrites, own_snapshots, reopens, deletions];
    assert!(mix.iter().all(|&n| n >= 3), "installs, overwrites, own snapshots, reopens, deletions: {mix:?}");
}

/// A persist as raft-rs makes them: entries that continue the log or overwrite an
/// unsnapshotted suffix in a newer term, sometimes a snapshot from the leader, a hard state.
fn random_persist(rng: &mut StdRng, reference: &Reference, term: &mut u64, token: u64) -> Persist {
    let mut p = Persist { token, must_sync: rng.gen_bool(0.7), ..Persist::default() };
    let mut next = reference.last_index() + 1;
    if rng.gen_range(0..100) < 4 {
        *term += 1;
        let index = reference.last_index() + rng.gen_range(1..30);
        p.snapshot = Some(snapshot(index, *term, format!("leader's image at {index}").as_bytes()));
        next = index + 1;
    } else if rng.gen_range(0..100) < 15 {
        // A new leader's log wins over our unsnapshotted suffix.
        let floor = reference.snapshot_index() + 1;
        next = rng.gen_range(floor.max(next.saturating_sub(6))..=next);
        *term += 1;
    }
    let count = rng.gen_range(0..=4);
    p.entries = (next..next + count)
        .map(|i| entry(i, *term, if rng.gen_bool(0.1) { rng.gen_range(200..700) } else { rng.gen_range(0..40) }))
        .collect();
    if rng.gen_bool(0.6) || (p.entries.is_empty() && p.snapshot.is_none()) {
        let last = p.entries.last().map_or(reference.last_index(), |e| e.index);
        p.hard_state = Some(hard_state(*term, rng.gen_range(0..4), rng.gen_range(0..=last)));
    }
    p
}

#[test]
fn entries_overwrite_a_conflicting_suffix() {
    let dir = TempDir::new("overwrite");
    let mut storage = open(&dir);
    storage.load().expect("load");
    storage.persist(&[persist(entries(1..=5, 1), Some(hard_state(1, 1, 2)))]).expect("persist");
    // A new leader in term 2 replaces 3..=5 with its own 3 and 4; 5 is gone.
    storage.persist(&[persist(entries(3..=4, 2), Some(hard_state(2, 2, 2)))]).expect("persist");
    let mut expected = entries(1..=2, 1);
    expected.extend(entries(3..=4, 2));
    let expected = Recovered { hard_state: hard_state(2, 2, 2), snapshot: None, entries: expected };
    assert_same(&storage.load().expect("load"), &expected, "same process");
    drop(storage);
    reopen_and_check(&dir, u64::MAX, &expected, "reopened");
}

#[test]
fn an_installed_snapshot_resets_the_log() {
    let dir = TempDir::new("installed");
    let mut storage = open(&dir);
    storage.load().expect("load");
    storage.persist(&[persist(entries(1..=5, 1), Some(hard_state(1, 0, 3)))]).expect("persist");
    let s = snapshot(10, 3, b"the leader's state");
    let install = Persist {
        token: 2,
        snapshot: Some(s.clone()),
        entries: entries(11..=12, 3),
        hard_state: Some(hard_state(3, 0, 10)),
        must_sync: true,
    };
    storage.persist(&[install]).expect("persist");
    let expected = Recovered { hard_state: hard_state(3, 0, 10), snapshot: Some(s), entries: entries(11..=12, 3) };
    assert_same(&storage.load().expect("load"), &expected, "same process");
    assert_eq!(snapshot_files(&storage), vec![storage.snap_dir().join("0000000000000003-000000000000000a.snap")]);
    drop(storage);
    reopen_and_check(&dir, u64::MAX, &expected, "reopened");
}

#[test]
fn segments_roll_over_at_the_bound() {
    let dir = TempDir::new("rollover");
    let segment_bytes_max = 300;
    let mut storage = open(&dir).with_segment_bytes_max(segment_bytes_max);
    storage.load().expect("load");
    let mut reference = Reference::default();
    for batch in 0..10u64 {
        let first = batch * 8 + 1;
        let p = persist(entries(first..=first + 7, 1), Some(hard_state(1, 1, first)));
        storage.persist(std::slice::from_ref(&p)).expect("persist");
        reference.apply(&p);
    }
    let files = segment_files(&storage);
    assert!(files.len() >= 10, "{} segments", files.len());
    for (seq, path) in files.iter().enumerate() {
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8");
        assert!(name.starts_with(&format!("{seq:016x}-")), "{name} is segment {seq}");
        assert!(file_len(path) <= segment_bytes_max, "{name} holds {} bytes", file_len(path));
    }
    // Each segment is named after the first entry it holds.
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8");
        let (_, first_index) = parse_segment_name(name).expect("a segment name");
        let scanned = scan_segment(path, &fs::read(path).expect("read"), false).expect("intact");
        let first_entry = scanned.records.iter().find_map(|r| match r {
            Record::Entry(e) => Some(e.index),
            _ => None,
        });
        assert_eq!(first_entry.unwrap_or(first_index), first_index, "{name}");
    }
    drop(storage);
    reopen_and_check(&dir, segment_bytes_max, &reference.recovered(), "after rollovers");
}

#[test]
fn a_record_larger_than_the_segment_bound_gets_a_segment_of_its_own() {
    let dir = TempDir::new("big-record");
    let mut storage = open(&dir).with_segment_bytes_max(100);
    storage.load().expect("load");
    let p = persist(vec![entry(1, 1, 10), entry(2, 1, 500), entry(3, 1, 10)], Some(hard_state(1, 1, 1)));
    storage.persist(std::slice::from_ref(&p)).expect("persist");
    assert_eq!(segment_files(&storage).len(), 3);
    let mut reference = Reference::default();
    reference.apply(&p);
    drop(storage);
    reopen_and_check(&dir, 100, &reference.recovered(), "big record");
}

#[test]
fn save_snapshot_deletes_old_segments_but_keeps_what_the_previous_snapshot_needs() {
    let dir = TempDir::new("delete-segments");
    let segment_bytes_max = 200;
    let mut storage = open(&dir).with_segment_bytes_max(segment_bytes_max);
    storage.load().expect("load");
    let mut reference = Reference::default();
    for i in 1..=100 {
        let p = persist(vec![entry(i, 1, 16)], Some(hard_state(1, 1, i)));
        storage.persist(std::slice::from_ref(&p)).expect("persist");
        reference.apply(&p);
    }
    let before = segment_files(&storage).len();
    // The first snapshot: the WAL must still recover without it (from nothing), so all stays.
    let s40 = snapshot(40, 1, b"image at 40");
    storage.save_snapshot(&s40, 31).expect("save");
    reference.save_snapshot(&s40, 31);
    assert_eq!(segment_files(&storage).len(), before, "nothing deleted while there is no older snapshot");
    // The second: keep from min(71, 40 + 1).
    let s80 = snapshot(80, 1, b"image at 80");
    storage.save_snapshot(&s80, 71).expect("save");
    reference.save_snapshot(&s80, 71);
    let after = segment_files(&storage).len();
    assert!(after < before, "old segments deleted: {before} -> {after}");
    let wal = storage.wal.as_ref().expect("loaded");
    let first = &wal.segments[0];
    assert!(first.max_entry_index.is_some_and(|m| m >= 41), "entry 41 is still there: {first:?}");
    assert!(wal.segments.iter().skip(1).all(|s| s.max_entry_index.is_some_and(|m| m > 41)));
    let seq0 = first.seq;
    assert!(seq0 > 0);
    drop(storage);
    let mut storage = reopen_and_check(&dir, segment_bytes_max, &reference.recovered(), "after deletion");
    // The segment being written to is never deleted, even when all it holds is behind.
    let segments = segment_files(&storage);
    let wal = storage.wal.as_mut().expect("loaded");
    wal.delete_segments_before(&storage.layout, u64::MAX).expect("delete");
    assert_eq!(segment_files(&storage), segments[segments.len() - 1..]);
}

/// A hard state written once, long ago, and followed only by entries: deleting the segment
/// that held it must not lose it (every segment starts with the hard state of its time).
#[test]
fn the_hard_state_survives_the_deletion_of_the_segment_it_was_written_in() {
    let dir = TempDir::new("hard-state-survives");
    let mut storage = open(&dir).with_segment_bytes_max(150);
    storage.load().expect("load");
    let mut reference = Reference::default();
    let first = persist(entries(1..=1, 4), Some(hard_state(4, 2, 1)));
    storage.persist(std::slice::from_ref(&first)).expect("persist");
    reference.apply(&first);
    for i in 2..=60 {
        let p = persist(vec![entry(i, 4, 20)], None);
        storage.persist(std::slice::from_ref(&p)).expect("persist");
        reference.apply(&p);
    }
    for (index, kept_from) in [(30, 30), (60, 60)] {
        let s = snapshot(index, 4, b"image");
        storage.save_snapshot(&s, kept_from).expect("save");
        reference.save_snapshot(&s, kept_from);
    }
    assert!(storage.wal.as_ref().expect("loaded").segments[0].seq > 0, "the first segment is gone");
    drop(storage);
    reopen_and_check(&dir, 150, &reference.recovered(), "hard state from the first segment");
}

/// Writes four persists, then cuts the segment at every byte offset within the last record:
/// `load` gives everything but that record, and the storage appends after it correctly.
#[test]
fn a_torn_last_record_is_truncated_at_every_cut_point() {
    let dir = TempDir::new("torn");
    let mut storage = open(&dir);
    storage.load().expect("load");
    let mut reference = Reference::default();
    for p in
        [persist(entries(1..=2, 1), Some(hard_state(1, 1, 1))), persist(entries(3..=3, 1), Some(hard_state(1, 1, 2)))]
    {
        storage.persist(std::slice::from_ref(&p)).expect("persist");
        reference.apply(&p);
    }
    let path = segment_files(&storage).pop().expect("a segment");
    let intact_bytes = file_len(&path);
    let last = persist(vec![entry(4, 1, 40)], None);
    storage.persist(std::slice::from_ref(&last)).expect("persist");
    let full = fs::read(&path).expect("read");
    drop(storage);
    let mut with_last = reference.clone();
    with_last.apply(&last);

    for cut in intact_bytes..full.len() as u64 {
        let context = format!("cut at {cut} of {}", full.len());
        fs::write(&path, &full[..cut as usize]).expect("write");
        let mut storage = reopen_and_check(&dir, u64::MAX, &reference.recovered(), &context);
        assert_eq!(file_len(&path), intact_bytes, "repaired ({context})");
        storage.persist(std::slice::from_ref(&last)).expect("persist after repair");
        drop(storage);
        reopen_and_check(&dir, u64::MAX, &with_last.recovered(), &format!("appended after {context}"));
    }

    // The same record, whole in length but with its end zeroed (its last sector never landed),
    // or with a flipped bit: a CRC mismatch in the very last record is a torn write too.
    for damage in ["zeroed tail", "flipped bit"] {
        let mut bytes = full.clone();
        match damage {
            "zeroed tail" => bytes[full.len() - 10..].fill(0),
            _ => bytes[full.len() - 5] ^= 0x10,
        }
        fs::write(&path, &bytes).expect("write");
        reopen_and_check(&dir, u64::MAX, &reference.recovered(), damage);
        assert_eq!(file_len(&path), intact_bytes, "repaired ({damage})");
    }

    // Trailing zeros after whole records (a preallocated or half-extended file) are no damage:
    // they stay, and the next record overwrites them from where they begin.
    let mut bytes = full.clone();
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&path, &bytes).expect("write");
    let mut storage = reopen_and_check(&dir, u64::MAX, &with_last.recovered(), "trailing zeros");
    assert_eq!(file_len(&path), bytes.len() as u64, "the zeros stay");
    let next = persist(vec![entry(5, 1, 50)], Some(hard_state(1, 1, 5)));
    storage.persist(std::slice::from_ref(&next)).expect("persist over the zeros");
    drop(storage);
    with_last.apply(&next);
    reopen_and_check(&dir, u64::MAX, &with_last.recovered(), "appended over trailing zeros");
}

#[test]
fn a_flipped_bit_before_the_tail_is_corruption_naming_file_and_offset() {
    let dir = TempDir::new("flipped");
    let mut storage = open(&dir);
    storage.load().expect("load");
    let mut offsets = Vec::new();
    for i in 1..=5 {
        let files = segment_files(&storage);
        offsets.push(files.last().map_or(0, |p| file_len(p)));
        storage.persist(&[persist(vec![entry(i, 1, 24)], None)]).expect("persist");
    }
    let path = segment_files(&storage).pop().expect("a segment");
    drop(storage);
    let original = fs::read(&path).expect("read");
    let middle = offsets[2];

    // In the payload, in the low bits of the length, in the high bits of the length.
    for (what, at, bit) in [("payload", middle + 12, 3), ("length", middle, 0), ("length high bits", middle + 3, 6)] {
        fs::write(&path, &original).expect("write");
        flip_bit(&path, at, bit);
        let err = open(&dir).load().expect_err(what);
        match &err {
            DiskError::Corrupt { kind: FileKind::Wal, path: p, offset, .. } => {
                assert_eq!((p, *offset), (&path, middle), "{what}: {err}");
            }
            other => panic!("{what}: expected corruption, got {other}"),
        }
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("corrupt WAL record in {} at offset {middle}: ", path.display())),
            "{what}: {message}"
        );
        assert_eq!(fs::read(&path).expect("read").len(), original.len(), "{what}: nothing was truncated");
    }
}

#[test]
fn damage_in_a_closed_segment_is_corruption_even_at_its_end() {
    let dir = TempDir::new("closed-segment");
    let mut storage = open(&dir).with_segment_bytes_max(120);
    storage.load().expect("load");
    for i in 1..=12 {
        storage.persist(&[persist(vec![entry(i, 1, 30)], None)]).expect("persist");
    }
    let files = segment_files(&storage);
    assert!(files.len() > 2);
    drop(storage);
    let first = &files[0];
    let bytes = fs::read(first).expect("read");
    fs::write(first, &bytes[..bytes.len() - 3]).expect("write");
    match open(&dir).with_segment_bytes_max(120).load() {
        Err(DiskError::Corrupt { path, .. }) => assert_eq!(&path, first),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn a_corrupt_snapshot_file_falls_back_to_an_older_one() {
    let dir = TempDir::new("snapshot-fallback");
    let segment_bytes_max = 200;
    let mut storage = open(&dir).with_segment_bytes_max(segment_bytes_max);
    storage.load().expect("load");
    let mut reference = Reference::default();
    fn save(storage: &mut FileStorage, reference: &mut Reference, index: u64, kept_from: u64) {
        let s = snapshot(index, 1, format!("image at {index}").as_bytes());
        storage.save_snapshot(&s, kept_from).expect("save");
        reference.save_snapshot(&s, kept_from);
    }
    fn write(storage: &mut FileStorage, reference: &mut Reference, range: std::ops::RangeInclusive<u64>) {
        for i in range {
            let p = persist(vec![entry(i, 1, 16)], Some(hard_state(1, 1, i)));
            storage.persist(std::slice::from_ref(&p)).expect("persist");
            reference.apply(&p);
        }
    }
    write(&mut storage, &mut reference, 1..=30);
    save(&mut storage, &mut reference, 10, 6);
    write(&mut storage, &mut reference, 31..=60);
    save(&mut storage, &mut reference, 20, 16);
    write(&mut storage, &mut reference, 61..=70);
    save(&mut storage, &mut reference, 50, 46);
    assert!(storage.wal.as_ref().expect("loaded").segments[0].seq > 0, "segments were deleted");
    drop(storage);

    let snaps = snapshot_files(&open(&dir));
    assert_eq!(snaps.len(), 3);
    let newest = &snaps[2];
    let len = file_len(newest);
    flip_bit(newest, len - 2, 1);

    // The one before it, and the WAL from it on.
    let mut expected = reference.recovered();
    expected.snapshot = Some(snapshot(20, 1, b"image at 20"));
    let all: Vec<Entry> = (21..=70).map(|i| entry(i, 1, 16)).collect();
    expected.entries = all;
    let mut storage = reopen_and_check(&dir, segment_bytes_max, &expected, "newest snapshot corrupt");
    // It keeps working: a new snapshot replaces the damaged one as the newest.
    let s70 = snapshot(70, 1, b"image at 70");
    storage.save_snapshot(&s70, 61).expect("save");
    reference.save_snapshot(&s70, 61);
    drop(storage);
    reopen_and_check(&dir, segment_bytes_max, &reference.recovered(), "new snapshot after the corrupt one");

    // With every snapshot but the oldest damaged, the WAL no longer reaches back to it.
    for path in snapshot_files(&open(&dir)).iter().skip(1) {
        flip_bit(path, 30, 0);
    }
    match open(&dir).load() {
        Err(DiskError::Inconsistent { reason, .. }) => assert!(reason.contains("starts at entry"), "{reason}"),
        other => panic!("expected an inconsistency, got {other:?}"),
    }
}

#[test]
fn a_corrupt_installed_snapshot_refuses_to_start() {
    let dir = TempDir::new("installed-corrupt");
    let mut storage = open(&dir);
    storage.load().expect("load");
    storage.persist(&[persist(entries(1..=3, 1), Some(hard_state(1, 0, 3)))]).expect("persist");
    let install = Persist {
        token: 2,
        snapshot: Some(snapshot(10, 2, b"leader")),
        entries: entries(11..=11, 2),
        hard_state: None,
        must_sync: true,
    };
    storage.persist(&[install]).expect("persist");
    let snap = snapshot_files(&storage).pop().expect("a snapshot file");
    drop(storage);
    flip_bit(&snap, file_len(&snap) - 1, 2);
    match open(&dir).load() {
        Err(e @ DiskError::Inconsistent { .. }) => assert!(e.to_string().contains("installed snapshot 10"), "{e}"),
        other => panic!("expected an inconsistency, got {other:?}"),
    }
}

/// A snapshot from the leader whose file was written but whose WAL marker was lost in the crash
/// (the tail after it torn away): the snapshot stands, the log it replaced is dropped.
#[test]
fn a_snapshot_file_whose_marker_was_lost_replaces_the_log() {
    let dir = TempDir::new("orphan-snapshot");
    let mut storage = open(&dir);
    storage.load().expect("load");
    storage.persist(&[persist(entries(1..=20, 1), Some(hard_state(1, 0, 5)))]).expect("persist");
    let path = segment_files(&storage).pop().expect("a segment");
    let before = file_len(&path);
    let s = snapshot(15, 3, b"leader");
    let install = Persist { token: 2, snapshot: Some(s.clone()), entries: vec![], hard_state: None, must_sync: true };
    storage.persist(&[install]).expect("persist");
    drop(storage);
    // The marker never reached the disk.
    let bytes = fs::read(&path).expect("read");
    fs::write(&path, &bytes[..before as usize]).expect("write");
    let expected = Recovered { hard_state: hard_state(1, 0, 5), snapshot: Some(s), entries: vec![] };
    reopen_and_check(&dir, u64::MAX, &expected, "orphan snapshot");
}

#[test]
fn reopening_after_load_appends_to_the_last_segment() {
    let dir = TempDir::new("reopen");
    let mut reference = Reference::default();
    for round in 0..4u64 {
        let mut storage = reopen_and_check(&dir, u64::MAX, &reference.recovered(), &format!("round {round}"));
        let first = round * 3 + 1;
        let p = persist(entries(first..=first + 2, round + 1), Some(hard_state(round + 1, 1, first)));
        storage.persist(std::slice::from_ref(&p)).expect("persist");
        reference.apply(&p);
        assert_eq!(segment_files(&storage).len(), 1, "one segment, appended to");
    }
    reopen_and_check(&dir, u64::MAX, &reference.recovered(), "end");
}

/// Production preallocates each segment to its bound, so that an fdatasync after an append
/// writes no inode. The zeros after the last record are not damage: a reopen appends where they
/// begin, and a finished segment is cut to its records before the next one starts.
#[test]
fn preallocated_segments_end_in_zeros_until_they_are_finished() {
    const SEGMENT_BYTES_MAX: u64 = 300;
    let dir = TempDir::new("preallocated");
    let mut reference = Reference::default();
    let mut index = 1;
    for round in 0..12u64 {
        // Every other reopen without preallocation: a WAL reads back the same either way.
        let preallocate = round % 2 == 0;
        let mut storage = reopen_and_check_with(
            &dir,
            SEGMENT_BYTES_MAX,
            &reference.recovered(),
            &format!("round {round}"),
            preallocate,
        );
        let p = persist(entries(index..=index + 4, 1), Some(hard_state(1, 1, index)));
        index += 5;
        storage.persist(std::slice::from_ref(&p)).expect("persist");
        reference.apply(&p);
        let files = segment_files(&storage);
        let (last, finished) = files.split_last().expect("a segment");
        if preallocate {
            assert_eq!(file_len(last), SEGMENT_BYTES_MAX, "round {round}: the open segment is preallocated");
        }
        for path in finished {
            // Scanned as a segment that is not the last: a zero tail would be corruption.
            scan_segment(path, &fs::read(path).expect("read"), false)
                .unwrap_or_else(|e| panic!("round {round}: a finished segment holds its records alone: {e}"));
        }
    }
    let segments = segment_files(&open(&dir)).len();
    assert!(segments >= 3, "the WAL rolled over ({segments} segments)");
    reopen_and_check(&dir, SEGMENT_BYTES_MAX, &reference.recovered(), "end");
}

#[test]
fn only_the_newest_snapshot_files_are_kept() {
    let dir = TempDir::new("snapshot-retention");
    let mut storage = open(&dir).with_snapshot_files_kept(2);
    storage.load().expect("load");
    storage.persist(&[persist(entries(1..=10, 1), None)]).expect("persist");
    for index in [2, 4, 6, 8] {
        storage.save_snapshot(&snapshot(index, 1, b"image"), index + 1).expect("save");
    }
    let names: Vec<String> = snapshot_files(&storage)
        .iter()
        .map(|p| p.file_name().and_then(|n| n.to_str()).expect("utf-8").to_owned())
        .collect();
    assert_eq!(names, ["0000000000000001-0000000000000006.snap", "0000000000000001-0000000000000008.snap"]);
}

#[test]
fn a_missing_segment_is_refused_and_temporary_files_are_removed() {
    let dir = TempDir::new("missing-segment");
    let mut storage = open(&dir).with_segment_bytes_max(100);
    storage.load().expect("load");
    for i in 1..=10 {
        storage.persist(&[persist(vec![entry(i, 1, 30)], None)]).expect("persist");
    }
    let files = segment_files(&storage);
    drop(storage);
    let stray = dir.path().join("member/snap/0000000000000001-0000000000000009.snap.tmp");
    fs::write(&stray, b"half a snapshot").expect("write");
    fs::remove_file(&files[1]).expect("remove");
    match open(&dir).load() {
        Err(DiskError::Inconsistent { path, reason }) => {
            assert_eq!(path, files[2]);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("expected an inconsistency, got {other:?}"),
    }
    assert!(!stray.exists());
}

#[test]
fn a_record_over_the_limit_is_refused_and_the_storage_stops() {
    let dir = TempDir::new("too-large");
    let mut storage = open(&dir);
    storage.load().expect("load");
    let huge = entry(1, 1, detcd_engine::limits::WAL_RECORD_BYTES_MAX + 1);
    match storage.persist(&[persist(vec![huge], None)]) {
        Err(DiskError::RecordTooLarge { bytes, bytes_max }) => assert!(bytes > bytes_max),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert!(matches!(storage.persist(&[persist(entries(1..=1, 1), None)]), Err(DiskError::Failed)));
    assert!(matches!(storage.load(), Err(DiskError::Failed)));
}

#[test]
fn errors_name_the_file() {
    let e = DiskError::io(
        "fsync",
        Path::new("/data/member/wal/0000000000000001-0000000000000001.wal"),
        std::io::Error::other("Input/output error"),
    );
    assert_eq!(
        e.to_string(),
        "cannot fsync /data/member/wal/0000000000000001-0000000000000001.wal: Input/output error"
    );
    let e = DiskError::corrupt(
        FileKind::Wal,
        Path::new("/data/member/wal/0000000000000001-0000000000000001.wal"),
        4096,
        "CRC mismatch",
    );
    assert_eq!(
        e.to_string(),
        "corrupt WAL record in /data/member/wal/0000000000000001-0000000000000001.wal at offset 4096: CRC mismatch"
    );
}

#[test]
fn the_identity_survives_a_restart_and_a_damaged_one_is_refused() {
    let dir = TempDir::new("identity");
    let identity = super::Identity { member_id: 0x1234, cluster_id: 0xabcd, founder: false };
    {
        let mut storage = FileStorage::open(dir.path()).unwrap();
        assert_eq!(storage.load_identity().unwrap(), None, "a fresh data dir has no identity");
        storage.save_identity(&identity).unwrap();
    }
    let mut storage = FileStorage::open(dir.path()).unwrap();
    assert_eq!(storage.load_identity().unwrap(), Some(identity));
    // Saving again replaces it (a founder's identity is saved on its first start only, but the
    // file must stay whole if it ever is rewritten).
    let founder = super::Identity { founder: true, ..identity };
    storage.save_identity(&founder).unwrap();
    assert_eq!(storage.load_identity().unwrap(), Some(founder));

    let path = dir.path().join("member").join("identity");
    let mut bytes = fs::read(&path).unwrap();
    bytes[9] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    match FileStorage::open(dir.path()).unwrap().load_identity() {
        Err(DiskError::Corrupt { kind: FileKind::Identity, path: p, .. }) => assert_eq!(p, path),
        other => panic!("a flipped bit in the identity file must be refused, got {other:?}"),
    }
    fs::write(&path, &bytes[..10]).unwrap();
    assert!(FileStorage::open(dir.path()).unwrap().load_identity().is_err(), "a short identity file is refused");
}
