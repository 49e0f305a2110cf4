//! The store against a deliberately naive model, on seeded random operations.
//!
//! The model keeps one flat list of every change ever made and answers every read by replaying
//! that list from the start; it shares no data structure and no read or write logic with the
//! store. (It does reuse `validate::check_txn`, etcd's txn shape and duplicate-key rule, which
//! the scenario tests in `mvcc.rs` pin down case by case.) Operations are generated with
//! `arbitrary` from bytes drawn from a seeded generator, so a failure replays from its seed:
//!
//!     DETCD_MODEL_SEED=<seed> cargo test -p detcd-engine --test mvcc_model
//!
//! `DETCD_MODEL_OPS` sets the operations per seed (default 10,000).

use std::collections::{BTreeMap, BTreeSet};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use detcd_engine::mvcc::{validate, Store};
use detcd_engine::{limits, Error};
use detcd_proto::etcdserverpb::{
    compare, request_op, response_op, CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use detcd_proto::mvccpb::{Event, KeyValue};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---- the model ---------------------------------------------------------------------------

/// One change, as the model remembers it: forever.
#[derive(Clone, Debug)]
struct Change {
    key: Bytes,
    revision: i64,
    /// `Some((value, lease))` for a put, `None` for a delete.
    put: Option<(Bytes, i64)>,
}

struct Model {
    changes: Vec<Change>,
    current: i64,
    compacted: i64,
    leases: BTreeSet<i64>,
}

fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    if end.is_empty() {
        key == start
    } else if end == b"\0" {
        key >= start
    } else {
        key >= start && key < end
    }
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader { revision, ..Default::default() })
}

impl Model {
    fn new(leases: BTreeSet<i64>) -> Model {
        Model { changes: Vec::new(), current: 1, compacted: -1, leases }
    }

    /// Every live key at `revision`, by replaying all changes up to it.
    fn state_at(&self, revision: i64) -> BTreeMap<Bytes, KeyValue> {
        let mut live: BTreeMap<Bytes, KeyValue> = BTreeMap::new();
        for c in self.changes.iter().take_while(|c| c.revision <= revision) {
            match &c.put {
                Some((value, lease)) => {
                    let (create, version) = match live.get(&c.key) {
                        Some(kv) => (kv.create_revision, kv.version + 1),
                        None => (c.revision, 1),
                    };
                    live.insert(
                        c.key.clone(),
                        KeyValue {
                            key: c.key.clone(),
                            create_revision: create,
                            mod_revision: c.revision,
                            version,
                            value: value.clone(),
                            lease: *lease,
                        },
                    );
                }
                None => {
                    live.remove(&c.key);
                }
            }
        }
        live
    }

    fn matching(&self, key: &[u8], end: &[u8], revision: i64) -> Vec<KeyValue> {
        self.state_at(revision).into_values().filter(|kv| in_range(&kv.key, key, end)).collect()
    }

    fn range(&self, r: &RangeRequest, view: i64) -> Result<RangeResponse, Error> {
        if r.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if r.revision > view {
            return Err(Error::FutureRevision);
        }
        let revision = if r.revision <= 0 { view } else { r.revision };
        if revision < self.compacted {
            return Err(Error::Compacted);
        }
        let all = self.matching(&r.key, &r.range_end, revision);
        let count = all.len() as i64;
        if r.count_only {
            return Ok(RangeResponse { header: header(view), kvs: vec![], more: false, count });
        }
        // etcd's quirk: without a sort order (even with a non-key sort target, which still sorts)
        // and without filters, only the first `limit + 1` keys in key order are fetched.
        let filtered = r.min_mod_revision != 0
            || r.max_mod_revision != 0
            || r.min_create_revision != 0
            || r.max_create_revision != 0;
        let fetched = if r.limit > 0 && r.sort_order == 0 && !filtered { r.limit as usize + 1 } else { usize::MAX };
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .take(fetched)
            .filter(|kv| r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            .filter(|kv| r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            .filter(|kv| r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
            .filter(|kv| r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            .collect();
        let target = r.sort_target;
        let order = match (r.sort_order, target) {
            (0, 0) => 0,
            (0, _) => 1,
            (o, _) => o,
        };
        if order == 1 || order == 2 {
            // Stable sort by the target; ties stay in key order.
            kvs.sort_by(|a, b| {
                let ord = match target {
                    1 => a.version.cmp(&b.version),
                    2 => a.create_revision.cmp(&b.create_revision),
                    3 => a.mod_revision.cmp(&b.mod_revision),
                    4 => a.value.cmp(&b.value),
                    _ => a.key.cmp(&b.key),
                };
                if order == 2 {
                    ord.reverse()
                } else {
                    ord
                }
            });
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() as i64 > r.limit {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value = Bytes::new();
            }
        }
        Ok(RangeResponse { header: header(view), kvs, more, count })
    }

    fn live(&self, key: &[u8], revision: i64) -> Option<KeyValue> {
        self.matching(key, b"", revision).into_iter().next()
    }

    fn check_put(&self, p: &PutRequest, view: i64) -> Result<(), Error> {
        if p.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if p.ignore_value && !p.value.is_empty() {
            return Err(Error::ValueProvided);
        }
        if p.ignore_lease && p.lease != 0 {
            return Err(Error::LeaseProvided);
        }
        if (p.ignore_value || p.ignore_lease) && self.live(&p.key, view).is_none() {
            return Err(Error::KeyNotFound);
        }
        if p.lease != 0 && !self.leases.contains(&p.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }

    /// Applies a put at revision `current + 1`, which the caller commits.
    fn do_put(&mut self, p: &PutRequest, events: &mut Vec<Event>) -> Result<PutResponse, Error> {
        let revision = self.current + 1;
        let prev = self.live(&p.key, revision);
        if prev.is_none() && (p.ignore_value || p.ignore_lease) {
            return Err(Error::KeyNotFound);
        }
        let value = if p.ignore_value { prev.as_ref().unwrap().value.clone() } else { p.value.clone() };
        let lease = if p.ignore_lease { prev.as_ref().unwrap().lease } else { p.lease };
        self.changes.push(Change { key: p.key.clone(), revision, put: Some((value, lease)) });
        let kv = self.live(&p.key, revision);
        events.push(Event { r#type: 0, kv, prev_kv: prev.clone() });
        Ok(PutResponse { header: header(revision), prev_kv: if p.prev_kv { prev } else { None } })
    }

    fn do_delete(&mut self, d: &DeleteRangeRequest, events: &mut Vec<Event>) -> DeleteRangeResponse {
        let revision = self.current + 1;
        let doomed = self.matching(&d.key, &d.range_end, revision);
        for kv in &doomed {
            self.changes.push(Change { key: kv.key.clone(), revision, put: None });
            let tomb = KeyValue { key: kv.key.clone(), mod_revision: revision, ..Default::default() };
            events.push(Event { r#type: 1, kv: Some(tomb), prev_kv: Some(kv.clone()) });
        }
        let view = if events.is_empty() { self.current } else { revision };
        DeleteRangeResponse {
            header: header(view),
            deleted: doomed.len() as i64,
            prev_kvs: if d.prev_kv { doomed } else { vec![] },
        }
    }

    fn commit(&mut self, events: &[Event]) {
        if !events.is_empty() {
            self.current += 1;
        }
    }

    fn put(&mut self, p: &PutRequest) -> Result<(PutResponse, Vec<Event>), Error> {
        self.check_put(p, self.current)?;
        let mut events = vec![];
        let r = self.do_put(p, &mut events)?;
        self.commit(&events);
        Ok((r, events))
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> Result<(DeleteRangeResponse, Vec<Event>), Error> {
        if d.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let mut events = vec![];
        let r = self.do_delete(d, &mut events);
        self.commit(&events);
        Ok((r, events))
    }

    fn compare_holds(&self, c: &Compare) -> bool {
        let kvs = self.matching(&c.key, &c.range_end, self.current);
        let target = c.target;
        if kvs.is_empty() && target == 3 {
            return false;
        }
        let check = |kv: &KeyValue| {
            use compare::TargetUnion as U;
            let ord = match (target, &c.target_union) {
                (0, Some(U::Version(n))) => kv.version.cmp(n),
                (0, _) => kv.version.cmp(&0),
                (1, Some(U::CreateRevision(n))) => kv.create_revision.cmp(n),
                (1, _) => kv.create_revision.cmp(&0),
                (2, Some(U::ModRevision(n))) => kv.mod_revision.cmp(n),
                (2, _) => kv.mod_revision.cmp(&0),
                (3, Some(U::Value(v))) => kv.value.cmp(v),
                (3, _) => kv.value.cmp(&Bytes::new()),
                (4, Some(U::Lease(n))) => kv.lease.cmp(n),
                (4, _) => kv.lease.cmp(&0),
                _ => std::cmp::Ordering::Equal,
            };
            match c.result {
                0 => ord.is_eq(),
                1 => ord.is_gt(),
                2 => ord.is_lt(),
                3 => ord.is_ne(),
                _ => true,
            }
        };
        if kvs.is_empty() {
            check(&KeyValue::default())
        } else {
            kvs.iter().all(check)
        }
    }

    /// The ops a txn will run, nested ones flattened in execution order, with each txn's
    /// branch decided against the store before the txn.
    fn taken<'a>(&self, t: &'a TxnRequest, out: &mut Vec<&'a request_op::Request>) {
        let ops = if t.compare.iter().all(|c| self.compare_holds(c)) { &t.success } else { &t.failure };
        for op in ops {
            match op.request.as_ref().unwrap() {
                request_op::Request::RequestTxn(inner) => self.taken(inner, out),
                other => out.push(other),
            }
        }
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<(TxnResponse, Vec<Event>), Error> {
        validate::check_txn(t, limits::MAX_TXN_OPS)?;
        let mut ops = vec![];
        self.taken(t, &mut ops);
        for op in &ops {
            if let request_op::Request::RequestPut(p) = op {
                self.check_put(p, self.current)?;
            }
        }
        for op in &ops {
            if let request_op::Request::RequestRange(r) = op {
                if r.revision > self.current {
                    return Err(Error::FutureRevision);
                }
                if r.revision > 0 && r.revision < self.compacted {
                    return Err(Error::Compacted);
                }
            }
        }
        let mut events = vec![];
        let mut resp = match self.run_txn(t, &mut events) {
            Ok(resp) => resp,
            Err(e) => {
                // Undo: forget every change of the revision being written.
                let current = self.current;
                self.changes.retain(|c| c.revision <= current);
                return Err(e);
            }
        };
        resp.header = header(if events.is_empty() { self.current } else { self.current + 1 });
        self.commit(&events);
        Ok((resp, events))
    }

    fn run_txn(&mut self, t: &TxnRequest, events: &mut Vec<Event>) -> Result<TxnResponse, Error> {
        // Compares are re-evaluated here against `current`, which this txn has not moved yet.
        let succeeded = t.compare.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let mut responses = vec![];
        for op in ops {
            let view = if events.is_empty() { self.current } else { self.current + 1 };
            let r = match op.request.as_ref().unwrap() {
                request_op::Request::RequestRange(r) => response_op::Response::ResponseRange(self.range(r, view)?),
                request_op::Request::RequestPut(p) => response_op::Response::ResponsePut(self.do_put(p, events)?),
                request_op::Request::RequestDeleteRange(d) => {
                    let had = events.len();
                    let mut resp = self.do_delete(d, events);
                    let after = if events.len() > had || had > 0 { self.current + 1 } else { self.current };
                    resp.header = header(after);
                    response_op::Response::ResponseDeleteRange(resp)
                }
                request_op::Request::RequestTxn(inner) => {
                    let mut r = self.run_txn(inner, events)?;
                    r.header = Some(ResponseHeader::default());
                    response_op::Response::ResponseTxn(r)
                }
            };
            responses.push(ResponseOp { response: Some(r) });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }

    fn compact(&mut self, revision: i64) -> Result<(), Error> {
        if revision <= self.compacted {
            return Err(Error::Compacted);
        }
        if revision > self.current {
            return Err(Error::FutureRevision);
        }
        self.compacted = revision;
        Ok(())
    }
}

// ---- operation generation ----------------------------------------------------------------

const KEYS: [&str; 8] = ["a", "ab", "abc", "b", "ba", "c", "cd", "d"];
const LEASES: [i64; 8] = [0, 0, 0, 0, 0, 1, 2, 3]; // 1 and 2 exist; 3 does not

#[derive(Arbitrary, Debug)]
enum EndGene {
    Single,
    Prefix,
    FromKey,
    To(u8),
    All,
}

#[derive(Arbitrary, Debug)]
enum RevGene {
    Latest,
    Negative,
    Back(u8),
    Future(u8),
}

#[derive(Arbitrary, Debug)]
struct RangeGene {
    key: u8,
    end: EndGene,
    rev: RevGene,
    limit: u8,
    sort_order: u8,
    sort_target: u8,
    flags: u8,
    filters: [u8; 4],
}

#[derive(Arbitrary, Debug)]
struct PutGene {
    key: u8,
    value: u8,
    lease: u8,
    flags: u8,
}

#[derive(Arbitrary, Debug)]
struct DeleteGene {
    key: u8,
    end: EndGene,
    prev_kv: bool,
}

#[derive(Arbitrary, Debug)]
struct CompareGene {
    key: u8,
    ranged: Option<EndGene>,
    target: u8,
    result: u8,
    operand: u8,
}

#[derive(Arbitrary, Debug)]
enum OpGene {
    Range(RangeGene),
    Put(PutGene),
    Delete(DeleteGene),
    Txn(Box<TxnGene>),
}

#[derive(Arbitrary, Debug)]
struct TxnGene {
    compares: Vec<CompareGene>,
    success: Vec<OpGene>,
    failure: Vec<OpGene>,
}

struct Gen {
    current: i64,
}

fn key_of(i: u8) -> Bytes {
    Bytes::from_static(KEYS[i as usize % KEYS.len()].as_bytes())
}

impl Gen {
    fn keys(&self, key: u8, end: &EndGene) -> (Bytes, Bytes) {
        let k = key_of(key);
        match end {
            EndGene::Single => (k, Bytes::new()),
            EndGene::Prefix => {
                let mut e = k.to_vec();
                *e.last_mut().unwrap() += 1;
                (k, e.into())
            }
            EndGene::FromKey => (k, Bytes::from_static(b"\0")),
            EndGene::To(j) => (k, key_of(*j)),
            EndGene::All => (Bytes::from_static(b"\0"), Bytes::from_static(b"\0")),
        }
    }

    fn revision(&self, g: &RevGene) -> i64 {
        match g {
            RevGene::Latest => 0,
            RevGene::Negative => -1,
            RevGene::Back(n) => (self.current - (*n % 24) as i64).max(1),
            RevGene::Future(n) => self.current + 1 + (*n % 2) as i64,
        }
    }

    fn near(&self, n: u8) -> i64 {
        (self.current - (n / 4 % 16) as i64).max(1)
    }

    fn range(&self, g: &RangeGene) -> RangeRequest {
        let (key, range_end) = self.keys(g.key, &g.end);
        let filter = |f: u8| if f % 5 == 0 { self.near(f) } else { 0 };
        RangeRequest {
            key,
            range_end,
            limit: (g.limit % 5) as i64 - 1,
            revision: self.revision(&g.rev),
            sort_order: (g.sort_order % 3) as i32,
            sort_target: (g.sort_target % 5) as i32,
            serializable: false,
            keys_only: g.flags & 1 != 0,
            count_only: g.flags & 6 == 6,
            min_mod_revision: filter(g.filters[0]),
            max_mod_revision: filter(g.filters[1]),
            min_create_revision: filter(g.filters[2]),
            max_create_revision: filter(g.filters[3]),
        }
    }

    fn put(&self, g: &PutGene) -> PutRequest {
        let ignore_value = g.flags % 8 == 1;
        let ignore_lease = g.flags % 8 == 2;
        let value =
            if ignore_value && g.value % 4 != 0 { Bytes::new() } else { Bytes::from(format!("v{}", g.value % 16)) };
        let lease = if ignore_lease && g.lease % 4 != 0 { 0 } else { LEASES[g.lease as usize % LEASES.len()] };
        PutRequest { key: key_of(g.key), value, lease, prev_kv: g.flags & 16 != 0, ignore_value, ignore_lease }
    }

    fn delete(&self, g: &DeleteGene) -> DeleteRangeRequest {
        let (key, range_end) = self.keys(g.key, &g.end);
        DeleteRangeRequest { key, range_end, prev_kv: g.prev_kv }
    }

    fn compare(&self, g: &CompareGene) -> Compare {
        use compare::TargetUnion as U;
        let (key, range_end) = match &g.ranged {
            Some(end) => self.keys(g.key, end),
            None => (key_of(g.key), Bytes::new()),
        };
        let target = (g.target % 5) as i32;
        let n = g.operand as i64 % 8;
        let target_union = match target {
            0 => U::Version(n % 4),
            1 => U::CreateRevision(self.near(g.operand)),
            2 => U::ModRevision(self.near(g.operand)),
            3 => U::Value(Bytes::from(format!("v{}", g.operand % 16))),
            _ => U::Lease(LEASES[n as usize % LEASES.len()]),
        };
        Compare { result: (g.result % 4) as i32, target, key, range_end, target_union: Some(target_union) }
    }

    fn op(&self, g: &OpGene, depth: usize) -> RequestOp {
        let request = match g {
            OpGene::Range(r) => request_op::Request::RequestRange(self.range(r)),
            OpGene::Put(p) => request_op::Request::RequestPut(self.put(p)),
            OpGene::Delete(d) => request_op::Request::RequestDeleteRange(self.delete(d)),
            OpGene::Txn(t) if depth < 2 => request_op::Request::RequestTxn(self.txn(t, depth + 1)),
            OpGene::Txn(_) => request_op::Request::RequestRange(self.range(&RangeGene {
                key: 0,
                end: EndGene::All,
                rev: RevGene::Latest,
                limit: 0,
                sort_order: 0,
                sort_target: 0,
                flags: 0,
                filters: [1; 4],
            })),
        };
        RequestOp { request: Some(request) }
    }

    fn txn(&self, g: &TxnGene, depth: usize) -> TxnRequest {
        TxnRequest {
            compare: g.compares.iter().take(3).map(|c| self.compare(c)).collect(),
            success: g.success.iter().take(4).map(|o| self.op(o, depth)).collect(),
            failure: g.failure.iter().take(4).map(|o| self.op(o, depth)).collect(),
        }
    }
}

// ---- the run -----------------------------------------------------------------------------

fn run(seed: u64, ops: usize) {
    let leases: BTreeSet<i64> = [1, 2].into_iter().collect();
    let mut store = Store::new();
    let mut model = Model::new(leases.clone());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = BTreeMap::<&str, (usize, usize)>::new();
    let replay = format!("DETCD_MODEL_SEED={seed} cargo test -p detcd-engine --test mvcc_model");
    for i in 0..ops {
        let mut bytes = [0u8; 512];
        rng.fill(&mut bytes[..]);
        let mut u = Unstructured::new(&bytes);
        let gen = Gen { current: store.current_revision() };
        let kind = u.int_in_range(0u8..=99).unwrap();
        macro_rules! same {
            ($name:literal, $req:expr, $store:expr, $model:expr) => {{
                let req = $req;
                let (got, want) = ($store(&req), $model(&req));
                assert_eq!(got, want, "op {i} ({}) diverged: {req:#?}\nreplay: {replay}", $name);
                let entry = tally.entry($name).or_default();
                entry.0 += 1;
                entry.1 += got.is_err() as usize;
            }};
        }
        match kind {
            0..=29 => same!("range", gen.range(&u.arbitrary().unwrap()), |r| store.range(r), |r| model
                .range(r, model.current)),
            30..=59 => same!(
                "put",
                gen.put(&u.arbitrary().unwrap()),
                |r| store.put(r, &leases).map(|a| (a.response, a.events)),
                |r| model.put(r)
            ),
            60..=74 => same!(
                "delete",
                gen.delete(&u.arbitrary().unwrap()),
                |r| store.delete_range(r).map(|a| (a.response, a.events)),
                |r| model.delete(r)
            ),
            75..=97 => same!(
                "txn",
                gen.txn(&u.arbitrary().unwrap(), 0),
                |r| store.txn(r, &leases).map(|a| (a.response, a.events)),
                |r| model.txn(r)
            ),
            _ => same!(
                "compact",
                CompactionRequest { revision: gen.revision(&u.arbitrary().unwrap()), physical: false },
                |r: &CompactionRequest| store.compact(r).map(|_| ()),
                |r: &CompactionRequest| model.compact(r.revision)
            ),
        }
        assert_eq!(store.current_revision(), model.current, "op {i}: revision\nreplay: {replay}");
        if i % 500 == 499 {
            // Every readable revision, whole keyspace.
            for revision in (model.compacted.max(1)..=model.current).step_by(7) {
                let all = RangeRequest {
                    key: Bytes::from_static(b"\0"),
                    range_end: Bytes::from_static(b"\0"),
                    revision,
                    ..Default::default()
                };
                assert_eq!(
                    store.range(&all),
                    model.range(&all, model.current),
                    "op {i}: state at {revision}\nreplay: {replay}"
                );
            }
        }
    }
    println!("seed {seed}: {ops} ops, final revision {}, (ops, refused) by kind: {tally:?}", store.current_revision());
    // The run must have exercised both accepted and refused requests of every kind.
    for (kind, (n, refused)) in &tally {
        assert!(*refused < *n, "seed {seed}: every {kind} was refused");
    }
    assert!(tally.values().map(|t| t.1).sum::<usize>() > 0, "seed {seed}: nothing was refused");
}

#[test]
fn store_matches_naive_model() {
    let ops: usize = std::env::var("DETCD_MODEL_OPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    match std::env::var("DETCD_MODEL_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => run(seed, ops),
        None => {
            for seed in [1, 2, 3] {
                run(seed, ops);
            }
        }
    }
}
