//! The store as plain data, for state images (raft snapshots and restart images).

use detcd_proto::internalpb::{KeyImage, VersionImage};

use super::key_history::{KeyHistory, Version};
use super::{Revision, Store};

impl Store {
    /// Every key's full history, in key order.
    pub fn to_key_images(&self) -> Vec<KeyImage> {
        self.keys
            .iter()
            .map(|(key, history)| KeyImage {
                key: key.clone(),
                versions: history
                    .versions()
                    .iter()
                    .map(|v| VersionImage {
                        mod_main: v.mod_revision.main,
                        mod_sub: v.mod_revision.sub,
                        create_revision: v.create_revision,
                        version: v.version,
                        lease: v.lease,
                        value: v.value.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Rebuilds a store from an image, checking what a store guarantees: keys strictly
    /// ascending, each history non-empty, revisions strictly ascending and not beyond
    /// `current_revision`. A corrupt image is refused, never half-loaded.
    pub fn from_key_images(current_revision: i64, compact_revision: i64, keys: Vec<KeyImage>) -> Result<Store, String> {
        let mut store = Store::new();
        if current_revision < 1 || compact_revision > current_revision {
            return Err(format!("bad revisions: current {current_revision}, compacted {compact_revision}"));
        }
        store.current_revision = current_revision;
        store.compact_revision = compact_revision;
        for image in keys {
            if store.keys.last_key_value().is_some_and(|(last, _)| *last >= image.key) {
                return Err(format!("keys out of order at {:?}", image.key));
            }
            let mut history = KeyHistory::default();
            for v in image.versions {
                let revision = Revision::new(v.mod_main, v.mod_sub);
                if history.versions().last().is_some_and(|last| last.mod_revision >= revision)
                    || v.mod_main > current_revision
                {
                    return Err(format!("revisions out of order for key {:?}", image.key));
                }
                history.push_raw(Version {
                    mod_revision: revision,
                    create_revision: v.create_revision,
                    version: v.version,
                    lease: v.lease,
                    value: v.value,
                });
            }
            if history.versions().is_empty() {
                return Err(format!("key {:?} without versions", image.key));
            }
            store.keys.insert(image.key, history);
        }
        store.size_bytes = store.count_size_bytes();
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::store::VERSION_OVERHEAD_BYTES;
    use crate::mvcc::NoLeases;
    use bytes::Bytes;
    use detcd_proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};

    #[test]
    fn round_trip_keeps_history_and_hash() {
        let mut s = Store::new();
        for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
            let req = PutRequest { key: Bytes::from(k), value: Bytes::from(v), ..Default::default() };
            s.put(&req, &NoLeases).unwrap();
        }
        s.delete_range(&DeleteRangeRequest { key: Bytes::from("b"), ..Default::default() }).unwrap();
        s.compact(&CompactionRequest { revision: 3, physical: false }).unwrap();
        let back = Store::from_key_images(s.current_revision(), s.compact_revision(), s.to_key_images()).unwrap();
        assert_eq!(back.hash_kv(0), s.hash_kv(0));
        assert_eq!(back.current_revision(), 5);
    }

    /// The size the quota sees grows by each version written (a tombstone included), shrinks
    /// when a compaction drops versions, and is the same after a restore from an image.
    #[test]
    fn the_size_follows_writes_compaction_and_restore() {
        let mut s = Store::new();
        assert_eq!(s.size_bytes(), 0);
        let put = |s: &mut Store, k: &str, v: &str| {
            let req =
                PutRequest { key: Bytes::from(k.to_owned()), value: Bytes::from(v.to_owned()), ..Default::default() };
            s.put(&req, &NoLeases).unwrap();
        };
        put(&mut s, "a", "12345");
        assert_eq!(s.size_bytes(), 1 + 5 + VERSION_OVERHEAD_BYTES);
        put(&mut s, "a", "123");
        assert_eq!(s.size_bytes(), 1 + 5 + 1 + 3 + 2 * VERSION_OVERHEAD_BYTES);
        s.delete_range(&DeleteRangeRequest { key: Bytes::from("a"), ..Default::default() }).unwrap();
        let before_compaction = s.size_bytes();
        assert_eq!(before_compaction, 1 + 5 + 1 + 3 + 1 + 3 * VERSION_OVERHEAD_BYTES);
        put(&mut s, "b", "x");
        s.compact(&CompactionRequest { revision: s.current_revision(), physical: false }).unwrap();
        // Only "b" is left: "a"'s versions and its tombstone are gone.
        assert_eq!(s.size_bytes(), 1 + 1 + VERSION_OVERHEAD_BYTES);
        let back = Store::from_key_images(s.current_revision(), s.compact_revision(), s.to_key_images()).unwrap();
        assert_eq!(back.size_bytes(), s.size_bytes());
    }

    #[test]
    fn corrupt_images_are_refused() {
        let v = |main| VersionImage { mod_main: main, version: 1, create_revision: main, ..Default::default() };
        let key = |k: &str, versions| KeyImage { key: Bytes::from(k.to_owned()), versions };
        assert!(Store::from_key_images(5, -1, vec![key("b", vec![v(2)]), key("a", vec![v(3)])]).is_err());
        assert!(Store::from_key_images(5, -1, vec![key("a", vec![v(3), v(2)])]).is_err());
        assert!(Store::from_key_images(5, -1, vec![key("a", vec![])]).is_err());
        assert!(Store::from_key_images(2, -1, vec![key("a", vec![v(3)])]).is_err());
        assert!(Store::from_key_images(5, -1, vec![key("a", vec![v(2)]), key("b", vec![v(3)])]).is_ok());
    }
}
