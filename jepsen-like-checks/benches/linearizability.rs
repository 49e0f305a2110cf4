//! Linearizability checker throughput on generated histories. Prints figures, asserts nothing.
//!
//!     cargo bench -p detcd-checks --bench linearizability
//!
//! Targets (issue 6): a 10,000-operation per-key register history from 10 clients checked in
//! under 1 s; a 2,000-operation etcd-model history from 8 clients in under 10 s. The histories
//! come from the same seeded generator as the tests (`tests/common`): a sequential reference
//! etcd, operations 100 ns apart with call and return up to 400 ns either side, 3% of writes
//! indeterminate (half of those take effect) and 2% failed. Budgets: 30 s and the default
//! 2 GiB of cache per history.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{generate, make_one_read_stale, mean_in_flight, GenConfig, Workload};
use detcd_checks::linearizability::{Budget, CheckOptions, Verdict};
use detcd_checks::{check_history, ModelKind};

fn run(label: &str, config: &GenConfig, model: ModelKind) {
    let mut generated = generate(config);
    for stale in [false, true] {
        if stale && make_one_read_stale(&mut generated).is_none() {
            continue;
        }
        let started = Instant::now();
        let checked = match check_history(
            &generated.ops,
            model,
            &CheckOptions { budget_ms: 30_000, ..CheckOptions::default() },
        ) {
            Ok(c) => c,
            Err(e) => {
                println!("{label}: cannot check: {e}");
                return;
            }
        };
        let elapsed = started.elapsed();
        let verdict = match checked.result.verdict {
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::NotLinearizable(v) => format!("NOT linearizable (prefix {} ops)", v.longest_prefix.len()),
            Verdict::Unknown { budget: Budget::Memory, .. } => "UNKNOWN (cache budget ran out)".to_string(),
            Verdict::Unknown { budget: Budget::Steps, .. } => "UNKNOWN (step budget ran out)".to_string(),
            Verdict::Unknown { budget: Budget::Time, .. } => "UNKNOWN (time budget ran out)".to_string(),
        };
        let s = checked.result.stats;
        println!(
            "{label:<66} {:>9.1} ms  {verdict:<34} {:>5} ops searched, {:>3} partitions, {:.1} in flight, {:>8} steps, {:>8} cache entries ({} MiB)",
            elapsed.as_secs_f64() * 1e3,
            s.ops,
            s.partitions,
            mean_in_flight(&generated.ops),
            s.steps,
            s.cache_entries,
            s.cache_bytes_max >> 20,
        );
    }
}

fn main() {
    let base = |ops, clients, keys, workload| GenConfig {
        seed: 1,
        clients,
        ops,
        keys,
        workload,
        indeterminate_per_mille: 30,
        failed_per_mille: 20,
        spacing_ns: 50,
    };
    println!("(each history twice: as generated, then with one read in its second half made stale)");
    let register = |ops, keys| base(ops, 10, keys, Workload::Register);
    run("register model, 10,000 ops, 10 clients, 10 keys [target < 1 s]", &register(10_000, 10), ModelKind::Register);
    run("register model, 10,000 ops, 10 clients, 100 keys", &register(10_000, 100), ModelKind::Register);
    run("register model, 10,000 ops, 10 clients, 1 key", &register(10_000, 1), ModelKind::Register);
    run(
        "etcd model, 2,000 ops, 8 clients, 10 keys [target < 10 s]",
        &base(2_000, 8, 10, Workload::Etcd),
        ModelKind::Etcd,
    );
    run("etcd model, 10,000 ops, 8 clients, 10 keys", &base(10_000, 8, 10, Workload::Etcd), ModelKind::Etcd);
}
