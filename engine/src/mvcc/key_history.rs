//! One key's history: every version written since the last compaction, oldest first.
//!
//! This is etcd's `keyIndex` with the values kept inline. A put appends a version; a delete
//! appends a *tombstone*, which ends the key's current *generation*: the next put starts a new
//! generation with `version = 1` and `create_revision` = its own revision.

use bytes::Bytes;
use detcd_proto::mvccpb::KeyValue;

use super::Revision;

/// One version of a key: a put, or a tombstone (`version == 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub mod_revision: Revision,
    /// Revision of the put that started this generation; 0 for a tombstone.
    pub create_revision: i64,
    /// Puts so far in this generation, this one included; 0 for a tombstone.
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
    pub value: Bytes,
}

impl Version {
    pub fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    /// The client's view of this version (a live version only).
    pub fn to_key_value(&self, key: &Bytes) -> KeyValue {
        debug_assert!(!self.is_tombstone());
        KeyValue {
            key: key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision.main,
            version: self.version,
            value: self.value.clone(),
            lease: self.lease,
        }
    }
}

/// The versions of one key, in ascending revision order. Never empty while in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyHistory {
    versions: Vec<Version>,
}

impl KeyHistory {
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// The version a reader at `revision` sees: the newest one at or below it, unless that is a
    /// tombstone (or there is none), in which case the key does not exist at `revision`.
    pub fn visible_at(&self, revision: i64) -> Option<&Version> {
        let below = self.versions.partition_point(|v| v.mod_revision.main <= revision);
        let newest = self.versions[..below].last()?;
        (!newest.is_tombstone()).then_some(newest)
    }

    /// Appends a put at `revision`, continuing the current generation if the key is live.
    pub fn put(&mut self, revision: Revision, value: Bytes, lease: i64) -> &Version {
        self.assert_after_last(revision);
        if self.versions.capacity() == 0 {
            // Most keys only ever hold one version at a time (compaction trims the rest); a
            // default first allocation of four would triple the store's metadata per key.
            self.versions.reserve_exact(1);
        }
        let (create_revision, version) = match self.versions.last() {
            Some(live) if !live.is_tombstone() => (live.create_revision, live.version + 1),
            _ => (revision.main, 1),
        };
        self.versions.push(Version { mod_revision: revision, create_revision, version, lease, value });
        self.versions.last().expect("just pushed")
    }

    /// Appends a tombstone at `revision`, ending the current generation. The key must be live.
    pub fn delete(&mut self, revision: Revision) {
        self.assert_after_last(revision);
        assert!(self.versions.last().is_some_and(|v| !v.is_tombstone()), "tombstone on a key that is not live");
        self.versions.push(Version {
            mod_revision: revision,
            create_revision: 0,
            version: 0,
            lease: 0,
            value: Bytes::new(),
        });
    }

    /// Forgets what neither a reader nor a watcher at `revision` or later needs. Kept:
    ///
    /// - every version written at `revision` or later, *including a tombstone written exactly
    ///   at `revision`* and every version of a txn at `revision`: a watch may start at the
    ///   compaction revision and must see that revision's events (etcd lost a delete event
    ///   there, etcd #18089 / #19179, fixed by keeping such a tombstone);
    /// - if the key has no version at `revision`, the newest version below it when live (what
    ///   a reader at `revision` sees).
    ///
    /// Everything older goes, so the first kept version's predecessor (a watch event's
    /// `prev_kv`) may be gone. Returns whether the history is now empty (the key can be
    /// dropped).
    pub fn compact(&mut self, revision: i64) -> bool {
        let first_kept = self.versions.partition_point(|v| v.mod_revision.main < revision);
        let cut = match self.versions.get(first_kept) {
            Some(v) if v.mod_revision.main == revision => first_kept,
            _ if first_kept > 0 && !self.versions[first_kept - 1].is_tombstone() => first_kept - 1,
            _ => first_kept,
        };
        self.versions.drain(..cut);
        self.versions.is_empty()
    }

    /// Forgets the versions written at `main` or later (a write batch that is undone). Returns
    /// whether the history is now empty.
    pub fn truncate_from(&mut self, main: i64) -> bool {
        let keep = self.versions.partition_point(|v| v.mod_revision.main < main);
        self.versions.truncate(keep);
        self.versions.is_empty()
    }

    /// Appends a version as it was (loading an image). The caller checks the order.
    pub(crate) fn push_raw(&mut self, version: Version) {
        self.assert_after_last(version.mod_revision);
        self.versions.push(version);
    }

    fn assert_after_last(&self, revision: Revision) {
        if let Some(last) = self.versions.last() {
            assert!(last.mod_revision < revision, "revision {revision:?} not after {:?}", last.mod_revision);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn generations_restart_after_a_tombstone() {
        let mut h = KeyHistory::default();
        h.put(rev(2), Bytes::from_static(b"a"), 0);
        h.put(rev(3), Bytes::from_static(b"b"), 0);
        h.delete(rev(4));
        let v = h.put(rev(5), Bytes::from_static(b"c"), 7).clone();
        assert_eq!((v.create_revision, v.version, v.lease), (5, 1, 7));
        assert_eq!(h.visible_at(1), None);
        assert_eq!(h.visible_at(3).map(|v| (v.create_revision, v.version)), Some((2, 2)));
        assert_eq!(h.visible_at(4), None);
        assert_eq!(h.visible_at(100).map(|v| v.version), Some(1));
    }

    #[test]
    fn compaction_keeps_what_readers_at_or_after_it_see() {
        let mut h = KeyHistory::default();
        h.put(rev(2), Bytes::from_static(b"a"), 0);
        h.put(rev(3), Bytes::from_static(b"b"), 0);
        h.put(rev(6), Bytes::from_static(b"c"), 0);
        assert!(!h.compact(4));
        assert_eq!(h.versions().len(), 2, "rev 3 is still visible at 4 and 5");
        assert_eq!(h.visible_at(4).map(|v| v.mod_revision.main), Some(3));
        h.delete(rev(7));
        assert!(!h.compact(7), "a tombstone at the compaction revision stays: a watch from 7 must see the delete");
        assert_eq!(h.versions().len(), 1);
        assert_eq!(h.visible_at(7), None);
        assert!(h.compact(8), "a tombstone below the compaction takes the key with it");
    }

    #[test]
    fn compaction_keeps_every_version_of_its_own_revision() {
        // A txn at 5 that deletes the key (from-key delete) and puts it again.
        let mut h = KeyHistory::default();
        h.put(rev(2), Bytes::from_static(b"a"), 0);
        h.delete(Revision::new(5, 0));
        h.put(Revision::new(5, 1), Bytes::from_static(b"b"), 0);
        assert!(!h.compact(5));
        let kept: Vec<_> = h.versions().iter().map(|v| v.mod_revision).collect();
        assert_eq!(kept, [Revision::new(5, 0), Revision::new(5, 1)]);
        assert_eq!(h.visible_at(5).map(|v| v.version), Some(1));
    }

    #[test]
    #[should_panic(expected = "not after")]
    fn revisions_must_grow() {
        let mut h = KeyHistory::default();
        h.put(rev(3), Bytes::new(), 0);
        h.put(rev(3), Bytes::new(), 0);
    }
}
