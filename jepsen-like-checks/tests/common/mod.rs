//! Shared by the tests and the benchmarks: short builders of history lines, a sequential
//! reference etcd written independently of the checker's model, and a seeded generator of
//! linearizable histories from it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use detcd_checks::history::{
    Bytes, Compare, CompareResult, CompareTarget, DeleteRequest, KeyValue, Operation, Outcome, PutRequest,
    RangeRequest, Request, Response, TxnOp, TxnOpResponse, TxnRequest,
};
use detcd_checks::linearizability::{CheckOptions, Verdict};
use detcd_checks::{check_history, ModelKind};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---- Builders -------------------------------------------------------------------------------

pub fn kv(key: &str, value: &str, create_revision: i64, mod_revision: i64, version: i64) -> KeyValue {
    KeyValue { key: key.into(), value: value.into(), create_revision, mod_revision, version, lease: 0 }
}

fn line(client: u64, call_ns: u64, return_ns: u64, op: Request, output: Response) -> Operation {
    Operation { client, call_ns, return_ns, op, outcome: Outcome::Ok, output: Some(output), error: None }
}

/// `put key=value`, answered at header revision `revision`.
pub fn put(client: u64, call_ns: u64, return_ns: u64, key: &str, value: &str, revision: i64) -> Operation {
    let op = Request::Put(PutRequest { key: key.into(), value: value.into(), lease: 0, prev_kv: false });
    line(client, call_ns, return_ns, op, Response::Put { header_revision: revision, prev_kv: None })
}

/// `range key` that returned `found` at header revision `revision`.
pub fn get(client: u64, call_ns: u64, return_ns: u64, key: &str, revision: i64, found: Option<KeyValue>) -> Operation {
    let op = Request::Range(RangeRequest { key: key.into(), range_end: Bytes::default(), revision: 0 });
    line(
        client,
        call_ns,
        return_ns,
        op,
        Response::Range { header_revision: revision, kvs: found.into_iter().collect() },
    )
}

/// `range [key, range_end)`.
pub fn range(
    client: u64,
    call_ns: u64,
    return_ns: u64,
    key: &str,
    range_end: &str,
    revision: i64,
    kvs: Vec<KeyValue>,
) -> Operation {
    let op = Request::Range(RangeRequest { key: key.into(), range_end: range_end.into(), revision: 0 });
    line(client, call_ns, return_ns, op, Response::Range { header_revision: revision, kvs })
}

pub fn del(client: u64, call_ns: u64, return_ns: u64, key: &str, revision: i64, deleted: i64) -> Operation {
    let op = Request::Delete(DeleteRequest { key: key.into(), range_end: Bytes::default(), prev_kv: false });
    line(client, call_ns, return_ns, op, Response::Delete { header_revision: revision, deleted, prev_kvs: vec![] })
}

/// `txn if value(key) == expected then put key=new else range key`: compare-and-set.
#[allow(clippy::too_many_arguments)]
pub fn cas(
    client: u64,
    call_ns: u64,
    return_ns: u64,
    key: &str,
    expected: &str,
    new: &str,
    revision: i64,
    succeeded: bool,
    seen_on_failure: Option<KeyValue>,
) -> Operation {
    let op = Request::Txn(TxnRequest {
        compare: vec![Compare {
            key: key.into(),
            range_end: Bytes::default(),
            result: CompareResult::Equal,
            target: CompareTarget::Value(expected.into()),
        }],
        success: vec![TxnOp::Put(PutRequest { key: key.into(), value: new.into(), lease: 0, prev_kv: false })],
        failure: vec![TxnOp::Range(RangeRequest { key: key.into(), range_end: Bytes::default(), revision: 0 })],
    });
    let responses = if succeeded {
        vec![TxnOpResponse::Put { prev_kv: None }]
    } else {
        vec![TxnOpResponse::Range { kvs: seen_on_failure.into_iter().collect() }]
    };
    line(client, call_ns, return_ns, op, Response::Txn { header_revision: revision, succeeded, responses })
}

/// The same request, but it timed out.
pub fn indeterminate(mut op: Operation) -> Operation {
    op.outcome = Outcome::Indeterminate;
    op.output = None;
    op.error = Some("deadline exceeded".into());
    op
}

/// The same request, but etcd refused it.
pub fn failed(mut op: Operation) -> Operation {
    op.outcome = Outcome::Failed;
    op.output = None;
    op.error = Some("etcdserver: request timed out, possibly due to connection lost".into());
    op
}

pub const MODELS: [ModelKind; 2] = [ModelKind::Register, ModelKind::Etcd];

pub fn verdict(ops: &[Operation], model: ModelKind) -> Verdict {
    let checked = check_history(ops, model, &CheckOptions { budget_ms: 30_000, ..CheckOptions::default() })
        .unwrap_or_else(|e| panic!("{model} model cannot check: {e}"));
    checked.result.verdict
}

#[track_caller]
pub fn assert_linearizable(ops: &[Operation], model: ModelKind) {
    match verdict(ops, model) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable(v) => panic!("{model} model: expected linearizable, got {v}"),
        Verdict::Unknown { reason, .. } => panic!("{model} model: expected linearizable, got unknown: {reason}"),
    }
}

/// Asserts a violation and returns the ids of the longest prefix and of the involved operations.
#[track_caller]
pub fn assert_violation(ops: &[Operation], model: ModelKind) -> (Vec<usize>, Vec<usize>) {
    match verdict(ops, model) {
        Verdict::NotLinearizable(v) => (v.longest_prefix.clone(), v.involved.iter().map(|o| o.id).collect()),
        other => panic!("{model} model: expected a violation, got {other:?}"),
    }
}

// ---- A sequential reference etcd ---------------------------------------------------------
//
// Written from etcd's documented behaviour without looking at the checker's model, so that the
// generated histories test the model as well as the search.

#[derive(Clone, Debug, Default)]
pub struct Reference {
    pub revision: i64,
    pub keys: BTreeMap<Bytes, KeyValue>,
}

fn in_range(k: &Bytes, key: &Bytes, end: &Bytes) -> bool {
    if end.is_empty() {
        k == key
    } else if end.as_slice() == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

impl Reference {
    pub fn new() -> Self {
        Reference { revision: 1, keys: BTreeMap::new() }
    }

    fn matching(&self, key: &Bytes, end: &Bytes) -> Vec<KeyValue> {
        self.keys.values().filter(|kv| in_range(&kv.key, key, end)).cloned().collect()
    }

    fn holds(&self, c: &Compare) -> bool {
        let kvs = self.matching(&c.key, &c.range_end);
        let ord = |kv: Option<&KeyValue>| match &c.target {
            CompareTarget::Value(v) => kv.map(|kv| kv.value.cmp(v)),
            CompareTarget::Version(n) => Some(kv.map_or(0, |kv| kv.version).cmp(n)),
            CompareTarget::CreateRevision(n) => Some(kv.map_or(0, |kv| kv.create_revision).cmp(n)),
            CompareTarget::ModRevision(n) => Some(kv.map_or(0, |kv| kv.mod_revision).cmp(n)),
            CompareTarget::Lease(n) => Some(kv.map_or(0, |kv| kv.lease).cmp(n)),
        };
        let ok = |o: Option<std::cmp::Ordering>| match (o, c.result) {
            (None, _) => false,
            (Some(o), CompareResult::Equal) => o.is_eq(),
            (Some(o), CompareResult::NotEqual) => o.is_ne(),
            (Some(o), CompareResult::Greater) => o.is_gt(),
            (Some(o), CompareResult::Less) => o.is_lt(),
        };
        if kvs.is_empty() {
            ok(ord(None))
        } else {
            kvs.iter().all(|kv| ok(ord(Some(kv))))
        }
    }

    /// Runs one request at revision `rev` (the current one + 1 for writes); returns its
    /// response body and whether it wrote.
    fn op(&mut self, op: &TxnOp, rev: i64) -> (TxnOpResponse, bool) {
        match op {
            TxnOp::Range(r) => (TxnOpResponse::Range { kvs: self.matching(&r.key, &r.range_end) }, false),
            TxnOp::Put(p) => {
                let prev = self.keys.get(&p.key).cloned();
                let next = KeyValue {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    create_revision: prev.as_ref().map_or(rev, |kv| kv.create_revision),
                    mod_revision: rev,
                    version: prev.as_ref().map_or(1, |kv| kv.version + 1),
                    lease: 0,
                };
                self.keys.insert(p.key.clone(), next);
                (TxnOpResponse::Put { prev_kv: if p.prev_kv { prev } else { None } }, true)
            }
            TxnOp::Delete(d) => {
                let gone = self.matching(&d.key, &d.range_end);
                for kv in &gone {
                    self.keys.remove(&kv.key);
                }
                let deleted = gone.len() as i64;
                (TxnOpResponse::Delete { deleted, prev_kvs: if d.prev_kv { gone } else { vec![] } }, deleted > 0)
            }
        }
    }

    pub fn apply(&mut self, request: &Request) -> Response {
        let rev = self.revision + 1;
        let single = |op: TxnOp, this: &mut Self| {
            let (r, wrote) = this.op(&op, rev);
            if wrote {
                this.revision = rev;
            }
            r
        };
        match request {
            Request::Range(r) => match single(TxnOp::Range(r.clone()), self) {
                TxnOpResponse::Range { kvs } => Response::Range { header_revision: self.revision, kvs },
                _ => unreachable!(),
            },
            Request::Put(p) => match single(TxnOp::Put(p.clone()), self) {
                TxnOpResponse::Put { prev_kv } => Response::Put { header_revision: self.revision, prev_kv },
                _ => unreachable!(),
            },
            Request::Delete(d) => match single(TxnOp::Delete(d.clone()), self) {
                TxnOpResponse::Delete { deleted, prev_kvs } => {
                    Response::Delete { header_revision: self.revision, deleted, prev_kvs }
                }
                _ => unreachable!(),
            },
            Request::Txn(t) => {
                let succeeded = t.compare.iter().all(|c| self.holds(c));
                let mut wrote_any = false;
                let mut responses = Vec::new();
                for op in if succeeded { &t.success } else { &t.failure } {
                    let (r, wrote) = self.op(op, rev);
                    wrote_any |= wrote;
                    responses.push(r);
                }
                if wrote_any {
                    self.revision = rev;
                }
                Response::Txn { header_revision: self.revision, succeeded, responses }
            }
            other => panic!("the reference does not run {other}"),
        }
    }
}

// ---- A generator of linearizable histories -----------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Single-key get, put, delete and compare-and-set on the value.
    Register,
    /// Adds multi-key ranges and deletes, and txns comparing mod revisions over two keys.
    Etcd,
}

#[derive(Clone, Debug)]
pub struct GenConfig {
    pub seed: u64,
    pub clients: u64,
    pub ops: usize,
    pub keys: usize,
    pub workload: Workload,
    /// Of the writes: this many per thousand time out (half of them take effect) ...
    pub indeterminate_per_mille: u32,
    /// ... and this many per thousand fail (and do not take effect).
    pub failed_per_mille: u32,
    /// Time between the instants at which operations take effect: with calls and returns up to
    /// 400 ns either side, 50 keeps about 6 of 10 clients busy, 100 about 4.
    pub spacing_ns: u64,
}

pub struct Generated {
    pub ops: Vec<Operation>,
    /// For each operation: the instant at which it took effect, if it did.
    pub effect_ns: Vec<Option<u64>>,
}

fn key_name(k: usize) -> String {
    format!("k{k:03}")
}

/// Runs `config.ops` operations one after another on the reference, at instants
/// `config.spacing_ns` apart,
/// each from a client that is idle then, and gives each a call time before its instant and a
/// return time after it, both random (up to 400 ns away): so the history is linearizable by
/// construction, with most clients busy at any time (see [`mean_in_flight`]). Every put writes a
/// value never written before. The lines come out sorted by call time, as a recorder would.
pub fn generate(config: &GenConfig) -> Generated {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut reference = Reference::new();
    let mut free_at_ns = vec![0u64; config.clients as usize];
    let mut out: Vec<(Operation, Option<u64>)> = Vec::with_capacity(config.ops);
    let mut instant_ns = 1_000u64;
    let mut unique = 0u64;
    while out.len() < config.ops {
        instant_ns += config.spacing_ns;
        let idle: Vec<usize> = (0..free_at_ns.len()).filter(|&c| free_at_ns[c] + 1 < instant_ns).collect();
        if idle.is_empty() {
            continue;
        }
        let client = idle[rng.gen_range(0..idle.len())];
        let call_ns = instant_ns - rng.gen_range(1..=400).min(instant_ns - free_at_ns[client] - 1);
        let return_ns = instant_ns + rng.gen_range(1..=400);
        free_at_ns[client] = return_ns;
        unique += 1;
        let request = random_request(&mut rng, config, &reference, unique);
        let roll = rng.gen_range(0..1000);
        let (outcome, takes_effect) = if request.is_read_only() {
            (Outcome::Ok, true)
        } else if roll < config.indeterminate_per_mille {
            (Outcome::Indeterminate, rng.gen_bool(0.5))
        } else if roll < config.indeterminate_per_mille + config.failed_per_mille {
            (Outcome::Failed, false)
        } else {
            (Outcome::Ok, true)
        };
        let output = takes_effect.then(|| reference.apply(&request));
        let op = Operation {
            client: client as u64,
            call_ns,
            return_ns,
            op: request,
            outcome,
            output: if outcome == Outcome::Ok { output } else { None },
            error: None,
        };
        out.push((op, takes_effect.then_some(instant_ns)));
    }
    out.sort_by_key(|(op, _)| op.call_ns);
    let (ops, effect_ns) = out.into_iter().unzip();
    Generated { ops, effect_ns }
}

/// The mean number of operations in flight (determinate ones only: an indeterminate one is in
/// flight to the end), over the span of the history.
pub fn mean_in_flight(ops: &[Operation]) -> f64 {
    let determinate = ops.iter().filter(|op| op.outcome == Outcome::Ok);
    let busy_ns: u64 = determinate.clone().map(|op| op.return_ns - op.call_ns).sum();
    let start = ops.iter().map(|op| op.call_ns).min().unwrap_or(0);
    let end = ops.iter().map(|op| op.return_ns).max().unwrap_or(0);
    busy_ns as f64 / (end - start).max(1) as f64
}

fn random_request(rng: &mut StdRng, config: &GenConfig, reference: &Reference, unique: u64) -> Request {
    let key = key_name(rng.gen_range(0..config.keys));
    let value = format!("v{unique}");
    let current_value = reference.keys.get(&Bytes::from(key.as_str())).map(|kv| kv.value.clone());
    let roll = rng.gen_range(0..100);
    match (config.workload, roll) {
        (_, 0..50) => {
            Request::Range(RangeRequest { key: key.as_str().into(), range_end: Bytes::default(), revision: 0 })
        }
        (_, 50..82) => Request::Put(PutRequest {
            key: key.as_str().into(),
            value: value.as_str().into(),
            lease: 0,
            prev_kv: rng.gen_bool(0.3),
        }),
        (_, 82..87) => Request::Delete(DeleteRequest {
            key: key.as_str().into(),
            range_end: Bytes::default(),
            prev_kv: rng.gen_bool(0.5),
        }),
        (Workload::Register, _) | (Workload::Etcd, 87..95) => {
            // Compare-and-set from the current value half the time (it succeeds if nothing
            // intervenes), from a made-up one otherwise (it fails).
            let expected = match current_value {
                Some(v) if rng.gen_bool(0.5) => v,
                _ => Bytes::from("nope"),
            };
            Request::Txn(TxnRequest {
                compare: vec![Compare {
                    key: key.as_str().into(),
                    range_end: Bytes::default(),
                    result: CompareResult::Equal,
                    target: CompareTarget::Value(expected),
                }],
                success: vec![TxnOp::Put(PutRequest {
                    key: key.as_str().into(),
                    value: value.as_str().into(),
                    lease: 0,
                    prev_kv: false,
                })],
                failure: vec![TxnOp::Range(RangeRequest {
                    key: key.as_str().into(),
                    range_end: Bytes::default(),
                    revision: 0,
                })],
            })
        }
        (Workload::Etcd, 95..98) => {
            // A range over several keys, or all of them.
            let start = rng.gen_range(0..config.keys);
            let end = if rng.gen_bool(0.3) { "\0".to_string() } else { key_name(rng.gen_range(start..=config.keys)) };
            Request::Range(RangeRequest {
                key: key_name(start).as_str().into(),
                range_end: end.as_str().into(),
                revision: 0,
            })
        }
        (Workload::Etcd, _) => {
            // Move a value from one key to another if neither changed since their revisions
            // were read.
            // Another key: etcd refuses a txn that deletes and puts the same key.
            let k = key[1..].parse::<usize>().expect("generated key names are k<n>");
            let other = key_name((k + rng.gen_range(1..config.keys.max(2))) % config.keys.max(2));
            let mod_of = |k: &str| reference.keys.get(&Bytes::from(k)).map_or(0, |kv| kv.mod_revision);
            Request::Txn(TxnRequest {
                compare: vec![
                    Compare {
                        key: key.as_str().into(),
                        range_end: Bytes::default(),
                        result: CompareResult::Equal,
                        target: CompareTarget::ModRevision(mod_of(&key)),
                    },
                    Compare {
                        key: other.as_str().into(),
                        range_end: Bytes::default(),
                        result: CompareResult::Less,
                        target: CompareTarget::ModRevision(mod_of(&other) + 1),
                    },
                ],
                success: vec![
                    TxnOp::Delete(DeleteRequest {
                        key: key.as_str().into(),
                        range_end: Bytes::default(),
                        prev_kv: true,
                    }),
                    TxnOp::Put(PutRequest {
                        key: other.as_str().into(),
                        value: value.as_str().into(),
                        lease: 0,
                        prev_kv: true,
                    }),
                ],
                failure: vec![TxnOp::Range(RangeRequest {
                    key: key_name(0).as_str().into(),
                    range_end: "\0".into(),
                    revision: 0,
                })],
            })
        }
    }
}

/// Makes one read stale: finds a single-key read R (from the middle of the history on) and two ok puts W1, W2 of its key with
/// W1 returned before W2 was called and W2 returned before R was called, so that W2 lies between
/// W1 and R in every linearization; then has R return W1's (unique) value as W1 left it. Returns
/// the id of the read, or `None` if the history has no such triple.
pub fn make_one_read_stale(generated: &mut Generated) -> Option<usize> {
    let (r, stale) = find_stale_read(generated)?;
    let Some(Response::Range { kvs, .. }) = &mut generated.ops[r].output else { return None };
    *kvs = vec![stale];
    Some(r)
}

fn find_stale_read(generated: &Generated) -> Option<(usize, KeyValue)> {
    let ops = &generated.ops;
    let is_put =
        |op: &Operation, key: &Bytes| op.outcome == Outcome::Ok && matches!(&op.op, Request::Put(p) if p.key == *key);
    // From the middle on, so that the search has work to do before it meets the stale read.
    for r in (ops.len() / 2..ops.len()).chain(0..ops.len() / 2) {
        let read = &ops[r];
        let Request::Range(RangeRequest { key, range_end, .. }) = &read.op else { continue };
        let Some(Response::Range { kvs, .. }) = &read.output else { continue };
        if !range_end.is_empty() {
            continue;
        }
        // W2: the latest put of the key that returned before R was called.
        let Some(w2) = (0..ops.len())
            .filter(|&i| is_put(&ops[i], key) && ops[i].return_ns < read.call_ns)
            .max_by_key(|&i| ops[i].return_ns)
        else {
            continue;
        };
        let Some(w1) = (0..ops.len()).find(|&i| is_put(&ops[i], key) && ops[i].return_ns < ops[w2].call_ns) else {
            continue;
        };
        // W1's key-value as it wrote it: replay the effects in the order of their instants.
        let stale = key_value_written_by(generated, w1)?;
        if kvs.first() != Some(&stale) {
            return Some((r, stale));
        }
    }
    None
}

/// Replays the operations that took effect, in the order of their instants, up to `w`, and
/// returns the key-value `w` (a put) left.
fn key_value_written_by(generated: &Generated, w: usize) -> Option<KeyValue> {
    let mut order: Vec<usize> = (0..generated.ops.len()).filter(|&i| generated.effect_ns[i].is_some()).collect();
    order.sort_by_key(|&i| generated.effect_ns[i]);
    let mut reference = Reference::new();
    for i in order {
        reference.apply(&generated.ops[i].op);
        if i == w {
            let Request::Put(p) = &generated.ops[w].op else { return None };
            return reference.keys.get(&p.key).cloned();
        }
    }
    None
}
