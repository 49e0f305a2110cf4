//! Histories generated from a sequential reference with random concurrent intervals
//! (`common::generate`): linearizable by construction, so the checker must say so; then one read
//! made stale, and it must not.

mod common;

use common::*;
use detcd_checks::history::{parse_history, write_history, Outcome};
use detcd_checks::linearizability::Verdict;
use detcd_checks::ModelKind;

fn config(seed: u64, workload: Workload) -> GenConfig {
    GenConfig {
        seed,
        clients: 10,
        ops: 1_000,
        keys: 5,
        workload,
        indeterminate_per_mille: 30,
        failed_per_mille: 20,
        spacing_ns: 50,
    }
}

fn check_generated(workload: Workload, model: ModelKind) {
    for seed in 0..5 {
        let mut generated = generate(&config(seed, workload));
        let outcomes = |o| generated.ops.iter().filter(|op| op.outcome == o).count();
        assert!(outcomes(Outcome::Indeterminate) > 0 && outcomes(Outcome::Failed) > 0, "seed {seed}: a varied history");
        assert_linearizable(&generated.ops, model);

        // The history survives a trip through the file format unchanged.
        let mut text = Vec::new();
        write_history(&mut text, &generated.ops).unwrap();
        assert_eq!(parse_history(std::str::from_utf8(&text).unwrap()).unwrap(), generated.ops);

        let stale = make_one_read_stale(&mut generated).expect("a history of 1,000 ops has a read to make stale");
        match verdict(&generated.ops, model) {
            Verdict::NotLinearizable(v) => {
                assert!(
                    v.involved.iter().any(|op| op.id == stale) || !v.longest_prefix.contains(&stale),
                    "seed {seed}: the stale read {stale} is neither involved nor outside the prefix:\n{v}"
                );
            }
            other => panic!("seed {seed}, {model} model: read {stale} made stale, got {other:?}"),
        }
    }
}

#[test]
fn register_histories_with_the_register_model() {
    check_generated(Workload::Register, ModelKind::Register);
}

#[test]
fn register_histories_with_the_etcd_model() {
    check_generated(Workload::Register, ModelKind::Etcd);
}

#[test]
fn etcd_histories_with_the_etcd_model() {
    check_generated(Workload::Etcd, ModelKind::Etcd);
}
