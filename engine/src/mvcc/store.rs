//! The store: all keys' histories, the current and the compacted revision, and the operations
//! etcd's KV service applies (range, put, delete-range, txn, compact, hash).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use detcd_proto::etcdserverpb::{
    compare, range_request, request_op, response_op, CompactionRequest, CompactionResponse, Compare,
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use detcd_proto::mvccpb::{event::EventType, Event, KeyValue};

use super::key_history::KeyHistory;
use super::{validate, KeyRange, Revision};
use crate::{limits, Error};

/// What the store needs to know about leases: whether one exists. The lessor answers it; the
/// store never grants or revokes.
pub trait LeaseView {
    fn lease_exists(&self, lease_id: i64) -> bool;
}

/// No lease exists (a store used without a lessor).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLeases;

impl LeaseView for NoLeases {
    fn lease_exists(&self, _lease_id: i64) -> bool {
        false
    }
}

impl LeaseView for BTreeSet<i64> {
    fn lease_exists(&self, lease_id: i64) -> bool {
        self.contains(&lease_id)
    }
}

/// A write's response and the changes it made, in the order made. The changes are what
/// watchers and the lessor (attach/detach) consume: each `Event` has the new `kv` (for a delete:
/// only `key` and `mod_revision`, as etcd sends it) and the `prev_kv` the key had before.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied<R> {
    pub response: R,
    pub events: Vec<Event>,
}

/// A hash of the store's history up to a revision (etcd's HashKV): two members that applied the
/// same writes and compactions have equal hashes at equal revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32C over every version at or below `hash_revision` still held after compaction.
    pub hash: u32,
    pub hash_revision: i64,
    pub compact_revision: i64,
}

/// The MVCC store. See the [module docs](super) for the contract.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) keys: BTreeMap<Bytes, KeyHistory>,
    pub(crate) current_revision: i64,
    /// The last compaction's revision; -1 before the first, as in etcd.
    pub(crate) compact_revision: i64,
    /// [`Store::size_bytes`], kept up to date by every commit and compaction.
    pub(crate) size_bytes: u64,
}

/// What one stored version counts for in [`Store::size_bytes`] beyond its key and value: about
/// what etcd's bbolt spends on a revision (its 17-byte revision key, the encoded key-value's
/// other fields, the key index entry, page overhead).
pub const VERSION_OVERHEAD_BYTES: u64 = 64;

/// The size one version of `key` holding `value` counts for.
pub fn version_bytes(key: &[u8], value: &[u8]) -> u64 {
    key.len() as u64 + value.len() as u64 + VERSION_OVERHEAD_BYTES
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

/// The writes of one request in progress: they all get revision `main`, numbered by `sub`.
struct Batch {
    main: i64,
    sub: i64,
    events: Vec<Event>,
}

impl Batch {
    fn new(main: i64) -> Batch {
        Batch { main, sub: 0, events: Vec::new() }
    }

    /// The revision a read inside this batch sees: its own writes once it has made any.
    fn read_revision(&self) -> i64 {
        if self.sub > 0 {
            self.main
        } else {
            self.main - 1
        }
    }

    fn next_revision(&mut self) -> Revision {
        let revision = Revision::new(self.main, self.sub);
        self.sub += 1;
        revision
    }
}

/// Which branch a txn and each txn nested in its taken branch take, decided up front against the
/// store as it was before the txn (etcd's `compareToPath`).
struct TxnPath {
    succeeded: bool,
    /// One per nested txn in the taken branch, in op order.
    nested: Vec<TxnPath>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Store {
    pub fn new() -> Store {
        Store { keys: BTreeMap::new(), current_revision: 1, compact_revision: -1, size_bytes: 0 }
    }

    /// The store's size as the quota (`--quota-backend-bytes`) and Status's `db_size` see it:
    /// [`version_bytes`] summed over every version held (tombstones too), so it grows with every
    /// write and shrinks when a compaction drops versions. There is no file with free pages
    /// behind it: compaction frees at once, and defragmenting has nothing left to give back.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// [`Store::size_bytes`] counted from scratch (after a compaction or a restore, which walk the
    /// whole store anyway).
    pub(crate) fn count_size_bytes(&self) -> u64 {
        self.keys.iter().map(|(key, h)| h.versions().iter().map(|v| version_bytes(key, &v.value)).sum::<u64>()).sum()
    }

    /// The revision of the last write (1 for a fresh store).
    pub fn current_revision(&self) -> i64 {
        self.current_revision
    }

    /// The revision of the last compaction, -1 if there was none.
    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    /// Keys with any history held (live or with versions kept for older readers).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The history of one key, if the store holds any.
    pub fn history(&self, key: &[u8]) -> Option<&KeyHistory> {
        self.keys.get(key)
    }

    // ---- reads ----------------------------------------------------------------------------

    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Error> {
        validate::check_range(req)?;
        self.range_in_view(req, self.current_revision)
    }

    /// etcd's range resolution: `requested <= 0` reads `view_revision` (the newest revision
    /// the reader can see), beyond it is the future, below the compaction is gone.
    fn read_revision(&self, requested: i64, view_revision: i64) -> Result<i64, Error> {
        if requested > view_revision {
            return Err(Error::FutureRevision);
        }
        let revision = if requested <= 0 { view_revision } else { requested };
        if revision < self.compact_revision {
            return Err(Error::Compacted);
        }
        Ok(revision)
    }

    /// A range as etcd's applier does it: fetch (everything when sorting or filtering, else
    /// `limit + 1` to learn `more`), drop by mod/create revision bounds, sort, cut to `limit`.
    /// `count` counts every key in the range at the revision, ignoring limit and filters.
    fn range_in_view(&self, req: &RangeRequest, view_revision: i64) -> Result<RangeResponse, Error> {
        use range_request::{SortOrder, SortTarget};
        let revision = self.read_revision(req.revision, view_revision)?;
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
        let order = match SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None) {
            // Keys come out in ascending key order already.
            SortOrder::Ascend if target == SortTarget::Key => SortOrder::None,
            SortOrder::None if target != SortTarget::Key => SortOrder::Ascend,
            order => order,
        };
        let fetch_max = match (req.limit > 0, req.sort_order != 0 || filtered) {
            (true, false) => usize::try_from(req.limit).unwrap_or(usize::MAX).saturating_add(1),
            _ => usize::MAX,
        };

        let mut count = 0i64;
        let mut kvs = Vec::new();
        for (key, history) in KeyRange::new(&req.key, &req.range_end).iter(&self.keys) {
            let Some(version) = history.visible_at(revision) else {
                continue;
            };
            count += 1;
            if !req.count_only && kvs.len() < fetch_max {
                kvs.push(version.to_key_value(key));
            }
        }
        let mut resp = RangeResponse { header: header(view_revision), kvs: Vec::new(), more: false, count };
        if req.count_only {
            return Ok(resp);
        }

        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
                && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
        });
        // Stable sorts: ties keep ascending key order, in both directions. (etcd's Go sort is
        // unstable, so any order of ties is etcd-compatible; ours is deterministic.)
        if order != SortOrder::None {
            let descend = order == SortOrder::Descend;
            macro_rules! sort_by {
                ($field:ident) => {
                    if descend {
                        kvs.sort_by(|a, b| b.$field.cmp(&a.$field))
                    } else {
                        kvs.sort_by(|a, b| a.$field.cmp(&b.$field))
                    }
                };
            }
            match target {
                SortTarget::Key => sort_by!(key),
                SortTarget::Version => sort_by!(version),
                SortTarget::Create => sort_by!(create_revision),
                SortTarget::Mod => sort_by!(mod_revision),
                SortTarget::Value => sort_by!(value),
            }
        }
        if req.limit > 0 && kvs.len() as i64 > req.limit {
            kvs.truncate(req.limit as usize);
            resp.more = true;
        }
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
        }
        resp.kvs = kvs;
        Ok(resp)
    }

    /// The live key-values of `[key, range_end)` at `revision` (compares use this).
    fn live_at<'a>(&'a self, key: &'a [u8], range_end: &'a [u8], revision: i64) -> impl Iterator<Item = KeyValue> + 'a {
        KeyRange::new(key, range_end)
            .iter(&self.keys)
            .filter_map(move |(k, h)| h.visible_at(revision).map(|v| v.to_key_value(k)))
    }

    // ---- writes ---------------------------------------------------------------------------

    pub fn put(&mut self, req: &PutRequest, leases: &dyn LeaseView) -> Result<Applied<PutResponse>, Error> {
        validate::check_put(req)?;
        self.check_put_preconditions(req, leases, self.current_revision)?;
        let mut batch = Batch::new(self.current_revision + 1);
        let response = self.put_in(&mut batch, req)?;
        Ok(Applied { response, events: self.commit(batch) })
    }

    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<Applied<DeleteRangeResponse>, Error> {
        validate::check_delete(req)?;
        let mut batch = Batch::new(self.current_revision + 1);
        let response = self.delete_in(&mut batch, req);
        Ok(Applied { response, events: self.commit(batch) })
    }

    /// Deletes those of `keys` that are live, all in one revision and with no op limit: how a
    /// lease revoke removes its keys (etcd uses a raw write txn for it). Returns how many went.
    pub fn delete_keys(&mut self, keys: &[Bytes]) -> Applied<i64> {
        let mut batch = Batch::new(self.current_revision + 1);
        let mut deleted = 0;
        for key in keys {
            let req = DeleteRangeRequest { key: key.clone(), ..Default::default() };
            deleted += self.delete_in(&mut batch, &req).deleted;
        }
        Applied { response: deleted, events: self.commit(batch) }
    }

    /// Every live key attached to a lease, with its lease: what a lessor restored from an image
    /// attaches.
    pub fn live_leased_keys(&self) -> Vec<(Bytes, i64)> {
        let current = self.current_revision;
        self.keys
            .iter()
            .filter_map(|(k, h)| h.visible_at(current).filter(|v| v.lease != 0).map(|v| (k.clone(), v.lease)))
            .collect()
    }

    /// A txn: every compare, also those of nested txns, is evaluated against the store as it
    /// was before the txn; the chosen ops are checked (leases, keys for `ignore_*`, range
    /// revisions) before anything is written. All its writes share one revision.
    ///
    /// A txn applies whole or not at all. One failure can only show while the ops run: a
    /// from-key delete (which etcd's duplicate check ignores) removing a key that a later
    /// `ignore_value` / `ignore_lease` put needs. etcd panics there ("unexpected error during
    /// txn with writes"); we undo the txn's writes and answer etcd's `KeyNotFound`.
    pub fn txn(&mut self, req: &TxnRequest, leases: &dyn LeaseView) -> Result<Applied<TxnResponse>, Error> {
        validate::check_txn(req, limits::MAX_TXN_OPS)?;
        let view = self.current_revision;
        let path = self.txn_path(req, view);
        self.check_txn_ops(req, &path, &mut |store, op| match op {
            request_op::Request::RequestPut(p) => store.check_put_preconditions(p, leases, view),
            _ => Ok(()),
        })?;
        self.check_txn_ops(req, &path, &mut |store, op| match op {
            request_op::Request::RequestRange(r) if r.revision > view => Err(Error::FutureRevision),
            request_op::Request::RequestRange(r) if r.revision > 0 && r.revision < store.compact_revision => {
                Err(Error::Compacted)
            }
            _ => Ok(()),
        })?;
        let mut batch = Batch::new(view + 1);
        match self.txn_in(&mut batch, req, &path) {
            Ok(mut response) => {
                response.header = header(batch.read_revision());
                Ok(Applied { response, events: self.commit(batch) })
            }
            Err(e) => {
                self.roll_back(batch);
                Err(e)
            }
        }
    }

    /// Compacts away every version no reader at `revision` or later can see.
    pub fn compact(&mut self, req: &CompactionRequest) -> Result<CompactionResponse, Error> {
        let revision = req.revision;
        if revision <= self.compact_revision {
            return Err(Error::Compacted);
        }
        if revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        self.keys.retain(|_, history| !history.compact(revision));
        self.compact_revision = revision;
        self.size_bytes = self.count_size_bytes();
        Ok(CompactionResponse { header: header(self.current_revision) })
    }

    /// etcd's HashKV: `revision <= 0` hashes up to the current revision.
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, Error> {
        if revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        if revision > 0 && revision < self.compact_revision {
            return Err(Error::Compacted);
        }
        let hash_revision = if revision <= 0 { self.current_revision } else { revision };
        let mut crc = 0u32;
        for (key, history) in &self.keys {
            for v in history.versions().iter().take_while(|v| v.mod_revision.main <= hash_revision) {
                crc = crc32c::crc32c_append(crc, &(key.len() as u64).to_le_bytes());
                crc = crc32c::crc32c_append(crc, key);
                for n in [v.mod_revision.main, v.mod_revision.sub, v.create_revision, v.version, v.lease] {
                    crc = crc32c::crc32c_append(crc, &n.to_le_bytes());
                }
                crc = crc32c::crc32c_append(crc, &(v.value.len() as u64).to_le_bytes());
                crc = crc32c::crc32c_append(crc, &v.value);
            }
        }
        Ok(KvHash { hash: crc, hash_revision, compact_revision: self.compact_revision })
    }

    // ---- the pieces of a write ------------------------------------------------------------

    /// etcd's `checkRequestPut`: `ignore_value` / `ignore_lease` need the key to exist, and a
    /// lease must exist.
    fn check_put_preconditions(&self, req: &PutRequest, leases: &dyn LeaseView, view: i64) -> Result<(), Error> {
        if (req.ignore_value || req.ignore_lease) && self.live_at(&req.key, &[], view).next().is_none() {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !leases.lease_exists(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    /// A put inside `batch`. Fails only for `ignore_value` / `ignore_lease` on a key an earlier
    /// op of the same txn deleted (see [`Store::txn`]).
    fn put_in(&mut self, batch: &mut Batch, req: &PutRequest) -> Result<PutResponse, Error> {
        let read_revision = batch.read_revision();
        let prev_kv = self
            .keys
            .get_key_value(&req.key[..])
            .and_then(|(key, history)| history.visible_at(read_revision).map(|v| v.to_key_value(key)));
        let (value, lease) = match (&prev_kv, req.ignore_value, req.ignore_lease) {
            (None, true, _) | (None, _, true) => return Err(Error::KeyNotFound),
            (Some(prev), ignore_value, ignore_lease) => (
                if ignore_value { prev.value.clone() } else { Bytes::copy_from_slice(&req.value) },
                if ignore_lease { prev.lease } else { req.lease },
            ),
            (None, false, false) => (Bytes::copy_from_slice(&req.value), req.lease),
        };
        // Keys are copied out of the request so the store never pins a whole request buffer.
        let key = prev_kv.as_ref().map_or_else(|| Bytes::copy_from_slice(&req.key), |kv| kv.key.clone());
        let history = self.keys.entry(key.clone()).or_default();
        let kv = history.put(batch.next_revision(), value, lease).to_key_value(&key);
        batch.events.push(Event { r#type: EventType::Put as i32, kv: Some(kv), prev_kv: prev_kv.clone() });
        Ok(PutResponse { header: header(batch.main), prev_kv: if req.prev_kv { prev_kv } else { None } })
    }

    fn delete_in(&mut self, batch: &mut Batch, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed: Vec<KeyValue> = self.live_at(&req.key, &req.range_end, batch.read_revision()).collect();
        for prev in &doomed {
            let revision = batch.next_revision();
            self.keys.get_mut(&prev.key).expect("live key has a history").delete(revision);
            let kv = KeyValue { key: prev.key.clone(), mod_revision: revision.main, ..Default::default() };
            batch.events.push(Event { r#type: EventType::Delete as i32, kv: Some(kv), prev_kv: Some(prev.clone()) });
        }
        DeleteRangeResponse {
            header: header(batch.read_revision()),
            deleted: doomed.len() as i64,
            prev_kvs: if req.prev_kv { doomed } else { Vec::new() },
        }
    }

    fn txn_in(&mut self, batch: &mut Batch, req: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, Error> {
        let ops = if path.succeeded { &req.success } else { &req.failure };
        let mut nested = path.nested.iter();
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match op.request.as_ref().expect("validated: no empty ops") {
                request_op::Request::RequestRange(r) => {
                    response_op::Response::ResponseRange(self.range_in_view(r, batch.read_revision())?)
                }
                request_op::Request::RequestPut(p) => response_op::Response::ResponsePut(self.put_in(batch, p)?),
                request_op::Request::RequestDeleteRange(d) => {
                    response_op::Response::ResponseDeleteRange(self.delete_in(batch, d))
                }
                request_op::Request::RequestTxn(t) => {
                    let path = nested.next().expect("one path per nested txn");
                    let mut inner = self.txn_in(batch, t, path)?;
                    // etcd leaves a nested txn's header empty.
                    inner.header = Some(ResponseHeader::default());
                    response_op::Response::ResponseTxn(inner)
                }
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: None, succeeded: path.succeeded, responses })
    }

    fn txn_path(&self, req: &TxnRequest, view: i64) -> TxnPath {
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c, view));
        let ops = if succeeded { &req.success } else { &req.failure };
        let nested = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(request_op::Request::RequestTxn(t)) => Some(self.txn_path(t, view)),
                _ => None,
            })
            .collect();
        TxnPath { succeeded, nested }
    }

    /// Runs `check` on every non-txn op the txn will execute, in execution order.
    fn check_txn_ops(
        &self,
        req: &TxnRequest,
        path: &TxnPath,
        check: &mut dyn FnMut(&Store, &request_op::Request) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let ops: &[RequestOp] = if path.succeeded { &req.success } else { &req.failure };
        let mut nested = path.nested.iter();
        for op in ops {
            match op.request.as_ref().expect("validated: no empty ops") {
                request_op::Request::RequestTxn(t) => {
                    self.check_txn_ops(t, nested.next().expect("one path per nested txn"), check)?
                }
                other => check(self, other)?,
            }
        }
        Ok(())
    }

    /// etcd's `applyCompare`: every key in the compare's range must satisfy it; an empty range
    /// compares a zero key-value, except that a value compare on no key is always false.
    fn compare_holds(&self, c: &Compare, view: i64) -> bool {
        let mut kvs = self.live_at(&c.key, &c.range_end, view).peekable();
        if kvs.peek().is_none() {
            return c.target != compare::CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default());
        }
        kvs.all(|kv| compare_kv(c, &kv))
    }

    /// Undoes every write of `batch`: the store is as if it never began.
    fn roll_back(&mut self, batch: Batch) {
        for event in &batch.events {
            let key = &event.kv.as_ref().expect("events carry a kv").key;
            if self.keys.get_mut(key).is_some_and(|h| h.truncate_from(batch.main)) {
                self.keys.remove(key);
            }
        }
    }

    fn commit(&mut self, batch: Batch) -> Vec<Event> {
        for event in &batch.events {
            let kv = event.kv.as_ref().expect("events carry a kv");
            // A delete stores a tombstone: the key without a value.
            self.size_bytes += version_bytes(&kv.key, &kv.value);
        }
        // The walk over the whole store only in this crate's unit tests.
        assert!(!cfg!(test) || self.size_bytes == self.count_size_bytes(), "size accounting is off");
        if batch.sub > 0 {
            assert_eq!(batch.main, self.current_revision + 1, "a batch writes the next revision");
            self.current_revision = batch.main;
        }
        batch.events
    }
}

/// etcd's `compareKV`, on raw enum numbers so that unknown values behave as etcd's switch does
/// (an unknown target compares as equal, an unknown result holds).
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let int = |n: Option<i64>| n.unwrap_or(0);
    let ordering = match T::try_from(c.target) {
        Ok(T::Value) => {
            let empty = Bytes::new();
            let want = match &c.target_union {
                Some(U::Value(v)) => v,
                _ => &empty,
            };
            kv.value[..].cmp(&want[..])
        }
        Ok(T::Create) => kv.create_revision.cmp(&int(match c.target_union {
            Some(U::CreateRevision(n)) => Some(n),
            _ => None,
        })),
        Ok(T::Mod) => kv.mod_revision.cmp(&int(match c.target_union {
            Some(U::ModRevision(n)) => Some(n),
            _ => None,
        })),
        Ok(T::Version) => kv.version.cmp(&int(match c.target_union {
            Some(U::Version(n)) => Some(n),
            _ => None,
        })),
        Ok(T::Lease) => kv.lease.cmp(&int(match c.target_union {
            Some(U::Lease(n)) => Some(n),
            _ => None,
        })),
        Err(_) => std::cmp::Ordering::Equal,
    };
    match R::try_from(c.result) {
        Ok(R::Equal) => ordering.is_eq(),
        Ok(R::NotEqual) => ordering.is_ne(),
        Ok(R::Greater) => ordering.is_gt(),
        Ok(R::Less) => ordering.is_lt(),
        Err(_) => true,
    }
}
