//! The Elle-style list-append checks on small hand-made histories: serializable ones pass, and
//! each anomaly is found and named. Each transaction has its own client unless said otherwise;
//! `t(client, call_ns, return_ns, [micro-ops])`, `ap(key, value)` appends, `rd(key, list)` is a
//! read that returned `list`.

use detcd_checks::elle::{check_list_append, AnomalyKind};
use detcd_checks::history::{ListOp, Operation, Outcome, Request, Response};

type Micro = (ListOp, Option<Vec<u64>>);

fn ap(key: &str, value: u64) -> Micro {
    (ListOp::Append { key: key.into(), value }, None)
}

fn rd(key: &str, list: &[u64]) -> Micro {
    (ListOp::Read { key: key.into() }, Some(list.to_vec()))
}

fn t(client: u64, call_ns: u64, return_ns: u64, micro: Vec<Micro>) -> Operation {
    let (ops, results): (Vec<ListOp>, Vec<Option<Vec<u64>>>) = micro.into_iter().unzip();
    Operation {
        client,
        call_ns,
        return_ns,
        op: Request::ListTxn { ops },
        outcome: Outcome::Ok,
        output: Some(Response::ListTxn { header_revision: 1, results }),
        error: None,
    }
}

fn not_ok(mut op: Operation, outcome: Outcome) -> Operation {
    op.outcome = outcome;
    op.output = None;
    op
}

fn kinds(h: &[Operation]) -> Vec<AnomalyKind> {
    let report = check_list_append(h);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.anomalies.iter().map(|a| a.kind).collect()
}

#[track_caller]
fn assert_anomaly(h: &[Operation], kind: AnomalyKind) -> Vec<usize> {
    let report = check_list_append(h);
    match report.anomalies.iter().find(|a| a.kind == kind) {
        Some(a) => a.ops.clone(),
        None => panic!("expected {kind}, got {:#?}", report.anomalies),
    }
}

#[test]
fn serial_and_concurrent_serializable_histories_pass() {
    let serial = vec![
        t(1, 0, 10, vec![ap("x", 1)]),
        t(2, 20, 30, vec![rd("x", &[1]), ap("x", 2), rd("x", &[1, 2])]),
        t(3, 40, 50, vec![rd("x", &[1, 2]), rd("y", &[])]),
    ];
    assert_eq!(kinds(&serial), vec![]);
    // Concurrent appends land in either order; a read in the middle sees the first.
    let concurrent = vec![
        t(1, 0, 100, vec![ap("x", 1), ap("y", 1)]),
        t(2, 0, 100, vec![ap("x", 2)]),
        t(3, 50, 60, vec![rd("x", &[2])]),
        t(4, 200, 210, vec![rd("x", &[2, 1]), rd("y", &[1])]),
    ];
    assert_eq!(kinds(&concurrent), vec![]);
}

#[test]
fn indeterminate_appends_may_show_up_or_not_but_failed_ones_never() {
    let shows = vec![not_ok(t(1, 0, 10, vec![ap("x", 1)]), Outcome::Indeterminate), t(2, 20, 30, vec![rd("x", &[1])])];
    assert_eq!(kinds(&shows), vec![]);
    let never = vec![not_ok(t(1, 0, 10, vec![ap("x", 1)]), Outcome::Indeterminate), t(2, 20, 30, vec![rd("x", &[])])];
    assert_eq!(kinds(&never), vec![]);
    // G1a: an aborted read.
    let aborted = vec![not_ok(t(1, 0, 10, vec![ap("x", 1)]), Outcome::Failed), t(2, 20, 30, vec![rd("x", &[1])])];
    assert_eq!(assert_anomaly(&aborted, AnomalyKind::G1a), vec![0, 1]);
    // Showing up twice.
    let twice =
        vec![not_ok(t(1, 0, 10, vec![ap("x", 1)]), Outcome::Indeterminate), t(2, 20, 30, vec![rd("x", &[1, 1])])];
    assert_anomaly(&twice, AnomalyKind::Duplicate);
}

#[test]
fn g0_write_cycle() {
    let h = vec![
        t(1, 0, 100, vec![ap("x", 1), ap("y", 1)]),
        t(2, 0, 100, vec![ap("x", 2), ap("y", 2)]),
        t(3, 200, 210, vec![rd("x", &[1, 2]), rd("y", &[2, 1])]),
    ];
    assert_eq!(kinds(&h), vec![AnomalyKind::G0]);
    let mut cycle = assert_anomaly(&h, AnomalyKind::G0);
    cycle.sort();
    assert_eq!(cycle, vec![0, 1]);
}

#[test]
fn g1c_circular_information_flow() {
    let h = vec![t(1, 0, 100, vec![ap("x", 1), rd("y", &[1])]), t(2, 0, 100, vec![ap("y", 1), rd("x", &[1])])];
    assert_eq!(kinds(&h), vec![AnomalyKind::G1c]);
}

#[test]
fn g_single_read_skew() {
    let h = vec![
        t(1, 0, 100, vec![ap("x", 1), ap("y", 1)]),
        t(2, 0, 100, vec![rd("x", &[]), rd("y", &[1])]),
        t(3, 200, 210, vec![rd("x", &[1])]),
    ];
    assert_eq!(kinds(&h), vec![AnomalyKind::GSingle]);
}

#[test]
fn g2_item_write_skew() {
    let h = vec![
        t(1, 0, 100, vec![rd("x", &[]), ap("y", 1)]),
        t(2, 0, 100, vec![rd("y", &[]), ap("x", 1)]),
        t(3, 200, 210, vec![rd("x", &[1]), rd("y", &[1])]),
    ];
    assert_eq!(kinds(&h), vec![AnomalyKind::G2Item]);
}

#[test]
fn realtime_variants_need_the_clock() {
    // A later append ordered before an earlier one.
    let g0 = vec![t(1, 0, 10, vec![ap("x", 1)]), t(2, 20, 30, vec![ap("x", 2)]), t(3, 40, 50, vec![rd("x", &[2, 1])])];
    assert_eq!(kinds(&g0), vec![AnomalyKind::G0Realtime]);
    // Reading the future: a value appended after the read returned.
    let g1c = vec![t(1, 0, 10, vec![rd("y", &[1])]), t(2, 20, 30, vec![ap("y", 1)])];
    assert_eq!(kinds(&g1c), vec![AnomalyKind::G1cRealtime]);
    // A stale read: the append completed before the read began.
    let g_single =
        vec![t(1, 0, 10, vec![ap("x", 1)]), t(2, 20, 30, vec![rd("x", &[])]), t(3, 40, 50, vec![rd("x", &[1])])];
    assert_eq!(kinds(&g_single), vec![AnomalyKind::GSingleRealtime]);
    // Two anti-dependencies and a realtime edge.
    let g2 = vec![
        t(1, 0, 10, vec![ap("w", 1)]),
        t(3, 20, 30, vec![rd("z", &[])]),
        t(2, 0, 100, vec![ap("z", 1), rd("w", &[])]),
        t(4, 200, 210, vec![rd("z", &[1]), rd("w", &[1])]),
    ];
    assert_eq!(kinds(&g2), vec![AnomalyKind::G2ItemRealtime]);
    // The same shapes with the transactions concurrent are fine.
    let fine = vec![t(1, 0, 100, vec![rd("y", &[1])]), t(2, 20, 30, vec![ap("y", 1)])];
    assert_eq!(kinds(&fine), vec![]);
}

#[test]
fn g1b_intermediate_read() {
    let h = vec![
        t(1, 0, 10, vec![ap("x", 1), ap("x", 2)]),
        t(2, 20, 30, vec![rd("x", &[1])]),
        t(3, 40, 50, vec![rd("x", &[1, 2])]),
    ];
    assert_eq!(assert_anomaly(&h, AnomalyKind::G1b), vec![0, 1]);
}

#[test]
fn internal_inconsistency() {
    let own_append_unseen = vec![t(1, 0, 10, vec![ap("x", 5), rd("x", &[])])];
    assert_eq!(kinds(&own_append_unseen), vec![AnomalyKind::Internal]);
    let reads_disagree = vec![t(1, 0, 10, vec![ap("x", 1)]), t(2, 20, 30, vec![rd("x", &[1]), rd("x", &[])])];
    assert!(kinds(&reads_disagree).contains(&AnomalyKind::Internal));
    let consistent =
        vec![t(1, 0, 10, vec![ap("x", 1)]), t(2, 20, 30, vec![rd("x", &[1]), ap("x", 2), rd("x", &[1, 2])])];
    assert_eq!(kinds(&consistent), vec![]);
}

#[test]
fn duplicates_incompatible_orders_and_garbage() {
    let dup = vec![t(1, 0, 10, vec![ap("x", 1)]), t(2, 20, 30, vec![rd("x", &[1, 1])])];
    assert!(kinds(&dup).contains(&AnomalyKind::Duplicate));
    let incompatible = vec![
        t(1, 0, 100, vec![ap("x", 1)]),
        t(2, 0, 100, vec![ap("x", 2)]),
        t(3, 200, 210, vec![rd("x", &[1, 2])]),
        t(4, 200, 210, vec![rd("x", &[2])]),
    ];
    assert_eq!(kinds(&incompatible), vec![AnomalyKind::IncompatibleOrder]);
    let garbage = vec![t(1, 0, 10, vec![rd("x", &[42])])];
    assert_eq!(kinds(&garbage), vec![AnomalyKind::Garbage]);
    // A value appended twice makes the history uncheckable.
    let twice = vec![t(1, 0, 10, vec![ap("x", 1)]), t(2, 20, 30, vec![ap("x", 1)])];
    assert!(!check_list_append(&twice).passed());
}

#[test]
fn a_long_serial_history_passes_and_a_late_stale_read_is_found() {
    // 2,000 transactions by 4 clients in turn, each appending to one of 5 keys and reading
    // another: serial, so serializable; then one read made stale.
    let mut lists: Vec<Vec<u64>> = vec![Vec::new(); 5];
    let mut h = Vec::new();
    for i in 0..2_000u64 {
        let (w, r) = ((i % 5) as usize, ((i + 2) % 5) as usize);
        lists[w].push(i);
        let key = |k: usize| format!("k{k}");
        h.push(t(i % 4, i * 10, i * 10 + 5, vec![ap(&key(w), i), rd(&key(r), &lists[r])]));
    }
    assert_eq!(kinds(&h), vec![]);
    // Transaction 1,500 (reading k2) sees k2 as it was before transaction 1,497's append.
    if let Some(Response::ListTxn { results, .. }) = &mut h[1_500].output {
        let list = results[1].as_mut().unwrap();
        list.pop();
    }
    assert_eq!(kinds(&h), vec![AnomalyKind::GSingleRealtime]);
}
