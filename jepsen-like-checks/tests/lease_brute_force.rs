//! The search on lease histories against brute force: on many small random histories of grants,
//! keepalives, revokes, leased puts and ranges, with leases expiring on their own, the etcd
//! model's verdict must equal that of trying every order of the operations, every subset of the
//! indeterminate ones and every placement of every lease's expiry, on a reference written here
//! from the documented semantics (`EtcdModel`'s docs: a lease may expire at any instant from its
//! TTL after the call of its grant or of its last keepalive answered, never before).
//!
//! This is what keeps the shortcuts that make lease histories tractable honest (a lease without
//! keys removed only where a keepalive finds it gone, timed-out keepalives and grants nobody uses
//! left out of the search): none of them may change a verdict, in either direction.

mod common;

use std::collections::BTreeMap;

use common::*;
use detcd_checks::history::{Bytes, KeyValue, Operation, Outcome, PutRequest, RangeRequest, Request, Response};
use detcd_checks::linearizability::Verdict;
use detcd_checks::ModelKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MS: u64 = 1_000_000;
const TTL_S: i64 = 1;
const TTL_NS: u64 = 1_000 * MS;

#[derive(Clone, Debug, Default)]
struct Reference {
    revision: i64,
    keys: BTreeMap<Bytes, KeyValue>,
    /// Live leases: id → the earliest instant of their last renewal.
    leases: BTreeMap<i64, u64>,
}

impl Reference {
    fn new() -> Self {
        Reference { revision: 1, ..Reference::default() }
    }

    /// Removes `id` and its keys (a revoke or an expiry); one new revision if it had keys.
    fn remove(&mut self, id: i64) {
        self.leases.remove(&id);
        let before = self.keys.len();
        self.keys.retain(|_, kv| kv.lease != id);
        if self.keys.len() != before {
            self.revision += 1;
        }
    }

    /// The answer to `request` called at `call_ns`; `None`: etcd refuses it.
    fn apply(&mut self, request: &Request, call_ns: u64) -> Option<Response> {
        Some(match request {
            Request::LeaseGrant { ttl_s, id } => {
                if self.leases.contains_key(id) {
                    return None;
                }
                self.leases.insert(*id, call_ns);
                Response::LeaseGrant { header_revision: self.revision, id: *id, ttl_s: *ttl_s }
            }
            Request::LeaseKeepalive { id } => match self.leases.get_mut(id) {
                Some(renewed) => {
                    *renewed = (*renewed).max(call_ns);
                    Response::LeaseKeepalive { header_revision: self.revision, ttl_s: TTL_S }
                }
                None => Response::LeaseKeepalive { header_revision: self.revision, ttl_s: 0 },
            },
            Request::LeaseRevoke { id } => {
                if !self.leases.contains_key(id) {
                    return None;
                }
                self.remove(*id);
                Response::LeaseRevoke { header_revision: self.revision }
            }
            Request::Put(p) => {
                if p.lease != 0 && !self.leases.contains_key(&p.lease) {
                    return None;
                }
                self.revision += 1;
                let old = self.keys.get(&p.key);
                let kv = KeyValue {
                    key: p.key.clone(),
                    value: p.value.clone(),
                    create_revision: old.map_or(self.revision, |o| o.create_revision),
                    mod_revision: self.revision,
                    version: old.map_or(0, |o| o.version) + 1,
                    lease: p.lease,
                };
                self.keys.insert(p.key.clone(), kv);
                Response::Put { header_revision: self.revision, prev_kv: None }
            }
            Request::Range(_) => {
                Response::Range { header_revision: self.revision, kvs: self.keys.values().cloned().collect() }
            }
            other => panic!("not generated: {other}"),
        })
    }

    /// The earliest instant lease `id` may expire.
    fn earliest_expiry_ns(&self, id: i64) -> Option<u64> {
        self.leases.get(&id).map(|renewed| renewed + TTL_NS)
    }
}

/// Keepalive answers are compared by "found or not" only (the model's docs).
fn same(seen: &Response, expected: &Response) -> bool {
    match (seen, expected) {
        (Response::LeaseKeepalive { ttl_s: a, .. }, Response::LeaseKeepalive { ttl_s: b, .. }) => (*a > 0) == (*b > 0),
        _ => seen == expected,
    }
}

/// Whether some sequence of the `ok` operations, a subset of the indeterminate ones and lease
/// expiries, with instants that respect every call and return, gives every `ok` operation its
/// answer. `now_ns`: the earliest instant the next step can have; instants are taken as early as
/// possible (which never hurts).
fn fits(ops: &[Operation], left: &[usize], state: &Reference, now_ns: u64) -> bool {
    let must_come_by = |now: u64| left.iter().all(|&j| ops[j].outcome != Outcome::Ok || ops[j].return_ns >= now);
    if left.iter().all(|&j| ops[j].outcome != Outcome::Ok) {
        return true;
    }
    for (k, &i) in left.iter().enumerate() {
        let op = &ops[i];
        let at = now_ns.max(op.call_ns);
        if !must_come_by(at) {
            continue;
        }
        let mut next = state.clone();
        let Some(answer) = next.apply(&op.op, op.call_ns) else { continue };
        if op.outcome == Outcome::Ok && !same(op.output.as_ref().expect("ok has an output"), &answer) {
            continue;
        }
        let rest: Vec<usize> = left.iter().enumerate().filter(|&(m, _)| m != k).map(|(_, &j)| j).collect();
        if fits(ops, &rest, &next, at) {
            return true;
        }
    }
    for &id in state.leases.keys() {
        let at = now_ns.max(state.earliest_expiry_ns(id).expect("alive"));
        if !must_come_by(at) {
            continue;
        }
        let mut next = state.clone();
        next.remove(id);
        if fits(ops, left, &next, at) {
            return true;
        }
    }
    false
}

fn brute_force(ops: &[Operation]) -> bool {
    let left: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].outcome != Outcome::Failed).collect();
    fits(ops, &left, &Reference::new(), 0)
}

/// A history of `clients` clients, `per_client` operations each, answered by a run of the
/// reference in which each operation takes effect at a random instant of its span and each lease
/// expires at a random instant after it may. Some operations end indeterminate (they took effect
/// or not), refused ones failed.
fn generate(rng: &mut StdRng, clients: u64, per_client: usize) -> Vec<Operation> {
    // (effect instant, client, call, return, request)
    let mut planned: Vec<(u64, u64, u64, u64, Request)> = Vec::new();
    let mut next_id = 1;
    for client in 0..clients {
        let mut t = rng.gen_range(0..300) * MS;
        let mut mine: Vec<i64> = Vec::new();
        for n in 0..per_client {
            let request = match rng.gen_range(0..10) {
                _ if mine.is_empty() || n == 0 => {
                    let id = (client as i64 + 1) * 100 + next_id;
                    next_id += 1;
                    mine.push(id);
                    Request::LeaseGrant { ttl_s: TTL_S, id }
                }
                0..=2 => Request::LeaseKeepalive { id: mine[rng.gen_range(0..mine.len())] },
                3 => Request::LeaseRevoke { id: mine[rng.gen_range(0..mine.len())] },
                4..=7 => Request::Put(PutRequest {
                    key: format!("k{}", rng.gen_range(0..2)).into(),
                    value: format!("c{client}-{n}").into(),
                    lease: if rng.gen_bool(0.8) { mine[rng.gen_range(0..mine.len())] } else { 0 },
                    prev_kv: false,
                }),
                _ => Request::Range(RangeRequest { key: "k".into(), range_end: "l".into(), revision: 0 }),
            };
            let call = t;
            let ret = call + rng.gen_range(1..400) * MS;
            let effect = rng.gen_range(call..=ret);
            planned.push((effect, client, call, ret, request));
            t = ret + rng.gen_range(0..500) * MS;
        }
    }
    planned.sort_by_key(|p| p.0);
    let mut reference = Reference::new();
    // When each lease will expire once it may: a random delay after its earliest instant.
    let expiry_delay: BTreeMap<i64, u64> = (0..1000).map(|id| (id, rng.gen_range(0..600) * MS)).collect();
    let mut ops = Vec::new();
    for (effect, client, call, ret, request) in planned {
        let due: Vec<i64> = reference
            .leases
            .keys()
            .copied()
            .filter(|&id| reference.earliest_expiry_ns(id).unwrap() + expiry_delay[&id] <= effect)
            .collect();
        for id in due {
            reference.remove(id);
        }
        let answer = reference.apply(&request, call);
        let mut op = Operation {
            client,
            call_ns: call,
            return_ns: ret,
            op: request,
            outcome: Outcome::Ok,
            output: answer,
            error: None,
        };
        if op.output.is_none() {
            op.outcome = Outcome::Failed;
            op.error = Some("refused".into());
        } else if rng.gen_ratio(1, 5) {
            op.outcome = Outcome::Indeterminate;
            op.output = None;
            op.error = Some("deadline exceeded".into());
        }
        ops.push(op);
    }
    ops.sort_by_key(|op| op.call_ns);
    ops
}

/// Changes one answer a little: a keepalive's found-or-not, a header off by one, a key-value
/// missing from a range, or a call moved earlier (which can make an expiry too early); or adds,
/// just before a range that shows a leased key, a keepalive that found that lease gone (fine
/// only if the lease may have expired or been revoked, and its keys with it, by then).
fn corrupt(rng: &mut StdRng, ops: &mut Vec<Operation>) {
    let showing_a_lease: Vec<(u64, i64)> = ops
        .iter()
        .filter_map(|op| match &op.output {
            Some(Response::Range { kvs, .. }) => kvs.iter().find(|kv| kv.lease != 0).map(|kv| (op.call_ns, kv.lease)),
            _ => None,
        })
        .collect();
    if !showing_a_lease.is_empty() && rng.gen_ratio(1, 3) {
        let (range_call_ns, lease) = showing_a_lease[rng.gen_range(0..showing_a_lease.len())];
        let call_ns = range_call_ns.saturating_sub(2 * MS);
        ops.push(Operation {
            client: 9,
            call_ns,
            return_ns: call_ns + MS,
            op: Request::LeaseKeepalive { id: lease },
            outcome: Outcome::Ok,
            output: Some(Response::LeaseKeepalive { header_revision: 0, ttl_s: 0 }),
            error: None,
        });
        ops.sort_by_key(|op| op.call_ns);
        return;
    }
    let candidates: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].output.is_some()).collect();
    if candidates.is_empty() {
        return;
    }
    let op = &mut ops[candidates[rng.gen_range(0..candidates.len())]];
    if rng.gen_ratio(1, 4) {
        let by = rng.gen_range(100..800) * MS;
        op.return_ns = op.return_ns.saturating_sub(by).max(op.call_ns.saturating_sub(by));
        op.call_ns = op.call_ns.saturating_sub(by);
        return;
    }
    match op.output.as_mut().unwrap() {
        Response::LeaseKeepalive { ttl_s, .. } => *ttl_s = if *ttl_s > 0 { 0 } else { TTL_S },
        Response::Range { header_revision, kvs } => {
            if kvs.is_empty() || rng.gen_bool(0.5) {
                *header_revision += 1
            } else {
                kvs.remove(rng.gen_range(0..kvs.len()));
            }
        }
        Response::Put { header_revision, .. }
        | Response::LeaseRevoke { header_revision }
        | Response::LeaseGrant { header_revision, .. } => *header_revision -= 1,
        _ => {}
    }
}

/// Random histories compared.
const SEEDS: u64 = 400;

#[test]
fn lease_search_agrees_with_brute_force() {
    let mut rng = StdRng::seed_from_u64(11);
    let (mut linearizable, mut not) = (0, 0);
    for seed in 0..SEEDS {
        let mut ops = generate(&mut rng, 3, 3);
        if seed % 2 == 1 {
            corrupt(&mut rng, &mut ops);
        }
        let expected = brute_force(&ops);
        let got = verdict(&ops, ModelKind::Etcd);
        assert!(!matches!(got, Verdict::Unknown { .. }), "seed {seed}: {got:?}");
        assert_eq!(got.is_linearizable(), expected, "seed {seed}: {got:?}\n{ops:#?}");
        if expected {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    eprintln!("{linearizable} linearizable, {not} not");
    assert!(linearizable > 50 && not > 30, "a fair mix: {linearizable} linearizable, {not} not");
}
