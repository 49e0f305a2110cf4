//! The search against brute force: on many small random histories, the etcd model's verdict must
//! equal that of trying every order (and every subset of indeterminate operations) on the
//! independent reference. This covers what the search does to go fast — the cache, pruning on
//! revisions, skipping indeterminate operations that would change nothing, the order of
//! candidates, pinning observed indeterminate writes — none of which may change a verdict.

mod common;

use common::*;
use detcd_checks::history::{Operation, Outcome, Request, Response};
use detcd_checks::linearizability::Verdict;
use detcd_checks::ModelKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Whether some order of the `ok` operations and of a subset of the indeterminate ones,
/// respecting real time (a before b when a returned before b was called), gives every `ok`
/// operation its output on the reference.
fn brute_force(ops: &[Operation]) -> bool {
    let ok: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].outcome == Outcome::Ok).collect();
    let maybe: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].outcome == Outcome::Indeterminate).collect();
    for subset in 0..(1u32 << maybe.len()) {
        let mut chosen = ok.clone();
        chosen.extend(maybe.iter().enumerate().filter(|(b, _)| subset & (1 << b) != 0).map(|(_, &i)| i));
        if permutations_fit(ops, &mut Vec::new(), &chosen, &Reference::new()) {
            return true;
        }
    }
    false
}

fn must_precede(a: &Operation, b: &Operation) -> bool {
    a.outcome == Outcome::Ok && a.return_ns < b.call_ns
}

fn permutations_fit(ops: &[Operation], placed: &mut Vec<usize>, left: &[usize], state: &Reference) -> bool {
    if left.is_empty() {
        return true;
    }
    for (k, &i) in left.iter().enumerate() {
        // i may go next only if nothing left must precede it.
        if left.iter().any(|&j| j != i && must_precede(&ops[j], &ops[i])) {
            continue;
        }
        let mut next = state.clone();
        let response = next.apply(&ops[i].op);
        if ops[i].outcome == Outcome::Ok && ops[i].output.as_ref() != Some(&response) {
            continue;
        }
        let rest: Vec<usize> = left.iter().enumerate().filter(|&(m, _)| m != k).map(|(_, &j)| j).collect();
        placed.push(i);
        if permutations_fit(ops, placed, &rest, &next) {
            return true;
        }
        placed.pop();
    }
    false
}

/// Changes one output a little: another key-value seen, a header off by one, a flipped
/// `succeeded`, a different `deleted`.
fn corrupt(rng: &mut StdRng, ops: &mut [Operation]) {
    let candidates: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].output.is_some()).collect();
    if candidates.is_empty() {
        return;
    }
    let i = candidates[rng.gen_range(0..candidates.len())];
    let delta = if rng.gen_bool(0.5) { 1 } else { -1 };
    match ops[i].output.as_mut().unwrap() {
        Response::Range { header_revision, kvs } => match rng.gen_range(0..3) {
            0 => *header_revision += delta,
            1 => kvs.clear(),
            _ => kvs.push(kv("k000", "v1", 2, 2, 1)),
        },
        Response::Put { header_revision, .. } => *header_revision += delta,
        Response::Delete { deleted, .. } => *deleted = 1 - (*deleted).min(1),
        Response::Txn { succeeded, header_revision, .. } => {
            if rng.gen_bool(0.5) {
                *succeeded = !*succeeded
            } else {
                *header_revision += delta
            }
        }
        _ => {}
    }
}

const SEEDS: u64 = 400;

#[test]
fn search_agrees_with_brute_force() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut linearizable, mut not) = (0, 0);
    for seed in 0..SEEDS {
        let config = GenConfig {
            seed,
            clients: 4,
            ops: 7,
            keys: 2,
            workload: if seed % 2 == 0 { Workload::Etcd } else { Workload::Register },
            indeterminate_per_mille: 250,
            failed_per_mille: 100,
            spacing_ns: 100,
        };
        let mut ops = generate(&config).ops;
        if seed % 3 != 0 {
            corrupt(&mut rng, &mut ops);
        }
        // Txns whose branches get the other response shape are refused by validation: skip.
        if ops.iter().any(|op| op.validate().is_err()) {
            continue;
        }
        let expected = brute_force(&ops);
        let got = verdict(&ops, ModelKind::Etcd);
        assert_eq!(got.is_linearizable(), expected, "seed {seed}: {got:?}\n{ops:#?}");
        assert!(!matches!(got, Verdict::Unknown { .. }));
        // The register model checks less (no revisions), so it passes whatever etcd passes.
        let register_supported = ops.iter().all(|op| match &op.op {
            Request::Range(r) => r.range_end.is_empty(),
            Request::Txn(t) => {
                t.compare.iter().all(|c| c.key == t.compare[0].key)
                    && t.success.iter().chain(&t.failure).all(|o| !matches!(o, detcd_checks::history::TxnOp::Delete(_)))
            }
            _ => true,
        });
        if expected && register_supported && seed % 2 == 1 {
            assert_linearizable(&ops, ModelKind::Register);
        }
        if expected {
            linearizable += 1;
        } else {
            not += 1;
        }
    }
    eprintln!("{linearizable} linearizable, {not} not");
    assert!(linearizable > 50 && not > 50, "a fair mix: {linearizable} linearizable, {not} not");
}
