use std::cell::Cell;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

/// The raft log as raft-rs reads it.
///
/// Two positions matter and they differ: the *base* (index and term of the last entry no longer
/// held: entries start at `base_index + 1`) and the *snapshot* served to followers that are
/// behind the base. Our own snapshots are taken at the applied index while the log keeps a tail
/// of entries behind it (etcd's catch-up entries), so the snapshot's index is at or after the
/// base. An installed snapshot from the leader moves both to its index.
///
/// Invariant: `entries[i].index == base_index + 1 + i`, `snapshot index >= base_index` (or no
/// snapshot yet, index 0).
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    base_index: u64,
    base_term: u64,
    entries: Vec<Entry>,
    /// Set when raft asked for a snapshot we cannot give (none yet, or one whose membership
    /// lacks the receiver — raft-rs rejects those, #472): the node then takes a fresh one.
    fresh_snapshot_wanted: Cell<bool>,
}

impl LogStore {
    /// The log of a member that founds a cluster with `voters` (non-empty), or joins one
    /// (empty). Founders start from the same snapshot at index 1, term 1, whose conf state
    /// holds the voters and whose data is `empty_image` (every founding member builds the same
    /// one, so it needs no persisting). A joining member starts empty and is sent a snapshot.
    pub fn bootstrap(voters: Vec<u64>, empty_image: impl Into<bytes::Bytes>) -> LogStore {
        let mut store = LogStore::default();
        if voters.is_empty() {
            return store;
        }
        let mut snapshot = Snapshot::default();
        snapshot.data = empty_image.into();
        let meta = snapshot.mut_metadata();
        meta.index = 1;
        meta.term = 1;
        meta.mut_conf_state().voters = voters.clone();
        store.conf_state.voters = voters;
        store.snapshot = snapshot;
        store.base_index = 1;
        store.base_term = 1;
        store.hard_state.term = 1;
        store.hard_state.commit = 1;
        store
    }

    /// Whether raft asked for a fresh snapshot since the last call (see the field's docs).
    pub fn take_fresh_snapshot_wanted(&self) -> bool {
        self.fresh_snapshot_wanted.replace(false)
    }

    /// The log recovered from disk: the latest snapshot (or none), the entries written after it
    /// and the hard state. Entries the snapshot covers are skipped; a gap is refused.
    pub fn recover(
        bootstrap: LogStore,
        hard_state: HardState,
        snapshot: Option<Snapshot>,
        entries: Vec<Entry>,
    ) -> Result<LogStore, String> {
        let mut store = bootstrap;
        if let Some(snapshot) = snapshot {
            let meta = snapshot.get_metadata();
            store.conf_state = meta.get_conf_state().clone();
            store.base_index = meta.index;
            store.base_term = meta.term;
            store.snapshot = snapshot;
        }
        for entry in entries.into_iter().filter(|e| e.index > store.base_index) {
            let expected = store.last_index() + 1;
            if entry.index != expected {
                return Err(format!("raft log has a gap: expected entry {expected}, found {}", entry.index));
            }
            store.entries.push(entry);
        }
        // The commit index on disk may lag the snapshot (it is persisted with a later ready);
        // everything in a snapshot is committed.
        let mut hard_state = hard_state;
        hard_state.commit = hard_state.commit.max(store.base_index);
        if store.base_term > hard_state.term {
            // A snapshot from a later term than the hard state on disk (its install was cut short
            // before the hard state was written): we never voted in that term.
            hard_state.term = store.base_term;
            hard_state.vote = 0;
        }
        store.hard_state = hard_state;
        Ok(store)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    /// The latest snapshot (empty metadata if none was ever taken or received).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn first_index(&self) -> u64 {
        self.base_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    /// The term of entry `idx`, if the log still knows it.
    pub fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.base_index {
            return Some(self.base_term);
        }
        if idx < self.base_index || idx > self.last_index() {
            return None;
        }
        Some(self.entries[(idx - self.first_index()) as usize].term)
    }

    /// Appends entries from a ready; entries at or after the first new index are replaced
    /// (raft overwrites a conflicting suffix).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first_new) = entries.first() else {
            return;
        };
        assert!(
            first_new.index > self.base_index,
            "append at {} below the log base {}",
            first_new.index,
            self.base_index
        );
        assert!(
            first_new.index <= self.last_index() + 1,
            "append at {} leaves a gap after {}",
            first_new.index,
            self.last_index()
        );
        self.entries.truncate((first_new.index - self.first_index()) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Installs a snapshot received from the leader: the log now starts right after it.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        assert!(
            meta.index >= self.hard_state.commit,
            "snapshot {} behind the commit index {}",
            meta.index,
            self.hard_state.commit
        );
        self.hard_state.commit = meta.index;
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.base_index = meta.index;
        self.base_term = meta.term;
        self.entries.clear();
        self.snapshot = snapshot;
    }

    /// Records our own snapshot of the applied state, and forgets the entries before
    /// `keep_from` (the ones kept let slow followers catch up without a snapshot).
    pub fn set_snapshot(&mut self, snapshot: Snapshot, keep_from: u64) {
        let index = snapshot.get_metadata().index;
        assert!(index >= self.snapshot.get_metadata().index, "snapshot goes back to {index}");
        assert!(index <= self.last_index(), "snapshot at {index} beyond the log end {}", self.last_index());
        self.snapshot = snapshot;
        let keep_from = keep_from.min(index + 1);
        if keep_from > self.first_index() {
            let new_base = keep_from - 1;
            self.base_term = self.term_of(new_base).expect("new base is in the log");
            self.entries.drain(..(new_base - self.base_index) as usize);
            self.base_index = new_base;
        }
    }

    /// Entries in `[low, high)` that the log holds.
    pub fn entries_between(&self, low: u64, high: u64) -> &[Entry] {
        let low = low.max(self.first_index());
        let high = high.min(self.last_index() + 1);
        if low >= high {
            return &[];
        }
        &self.entries[(low - self.first_index()) as usize..(high - self.first_index()) as usize]
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.base_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(high <= self.last_index() + 1, "entries [{low}, {high}) beyond the log end {}", self.last_index());
        let mut out = self.entries_between(low, high).to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        match self.term_of(idx) {
            Some(term) => Ok(term),
            None if idx < self.base_index => Err(raft::Error::Store(StorageError::Compacted)),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(LogStore::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(LogStore::last_index(self))
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Only a snapshot at or after the base can bring a follower to where our log starts,
        // and only one that names the follower as a member will be accepted by it.
        let meta = self.snapshot.get_metadata();
        let cs = meta.get_conf_state();
        let names_receiver = cs.voters.contains(&to) || cs.learners.contains(&to);
        if meta.index == 0 || meta.index < self.base_index || meta.index < request_index || !names_receiver {
            self.fresh_snapshot_wanted.set(true);
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, ..Default::default() }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s
    }

    #[test]
    fn append_overwrites_a_conflicting_suffix() {
        let mut log = LogStore::bootstrap(vec![], bytes::Bytes::new());
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        log.append(&[entry(2, 2)]);
        assert_eq!(log.last_index(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
        assert_eq!(log.term(0).unwrap(), 0);
    }

    #[test]
    fn own_snapshot_keeps_a_catch_up_tail() {
        let mut log = LogStore::bootstrap(vec![], bytes::Bytes::new());
        log.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>());
        log.set_snapshot(snapshot(8, 1), 6);
        assert_eq!((log.first_index(), log.last_index()), (6, 10));
        assert_eq!(log.term(5).unwrap(), 1, "the base keeps its term");
        assert!(matches!(
            log.entries(5, 7, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(log.snapshot(0, 2).is_err(), "a snapshot that does not name the receiver is not served");
        assert!(log.take_fresh_snapshot_wanted());
        let mut named = snapshot(9, 1);
        named.mut_metadata().mut_conf_state().voters = vec![1, 2];
        log.set_snapshot(named, 6);
        assert_eq!(log.snapshot(0, 2).unwrap().get_metadata().index, 9);
        assert!(!log.take_fresh_snapshot_wanted());
    }

    #[test]
    fn founders_share_a_bootstrap_snapshot() {
        let log = LogStore::bootstrap(vec![1, 2, 3], bytes::Bytes::from_static(b"img"));
        assert_eq!((log.first_index(), log.last_index(), log.hard_state().commit, log.hard_state().term), (2, 1, 1, 1));
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
        assert_eq!(log.snapshot(0, 2).unwrap().data, bytes::Bytes::from_static(b"img"));
        assert!(log.snapshot(0, 4).is_err(), "a joiner needs a snapshot that names it");
    }

    #[test]
    fn installed_snapshot_replaces_the_log() {
        let mut log = LogStore::bootstrap(vec![], bytes::Bytes::new());
        log.append(&[entry(1, 1), entry(2, 1)]);
        log.apply_snapshot(snapshot(20, 3));
        assert_eq!((log.first_index(), log.last_index(), log.hard_state().commit), (21, 20, 20));
        log.append(&[entry(21, 3)]);
        assert_eq!(log.term(21).unwrap(), 3);
    }

    #[test]
    fn recovery_skips_what_the_snapshot_covers_and_refuses_gaps() {
        let entries = (3..=6).map(|i| entry(i, 1)).collect::<Vec<_>>();
        let log = LogStore::recover(LogStore::default(), HardState::default(), Some(snapshot(4, 1)), entries.clone())
            .unwrap();
        assert_eq!((log.first_index(), log.last_index(), log.hard_state().commit), (5, 6, 4));
        let gap = vec![entry(5, 1), entry(7, 1)];
        assert!(LogStore::recover(LogStore::default(), HardState::default(), None, gap).is_err());
    }
}
