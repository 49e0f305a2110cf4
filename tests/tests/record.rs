//! `detcd-check record` end to end: the register, txn, append, watch and lease workloads recorded
//! against Debian's real etcd 3.4, against one detcd member and against three, and each history
//! checked by every checker that applies (linearizability, the watch guarantees, Elle's list-append
//! anomalies) — all must pass, and the history must hold enough answered requests to mean something.
//!
//! Needs `/usr/bin/etcd` (Debian's `etcd-server`, or `$ETCD_BIN`) and `target/debug/detcd-check`
//! (or `$DETCD_CHECK_BIN`); `tests/run-all.sh` installs the one and builds the other.

use std::path::{Path, PathBuf};
use std::process::Command;

use detcd_checks::history::{read_history, ListOp, Outcome, Request};
use detcd_tests::{Cluster, Etcd, TempDir};

/// Each workload runs this long, with this many clients: a few thousand operations, checked in
/// well under a second, so that the whole file stays within a minute or so.
const DURATION: &str = "3s";
const CLIENTS: &str = "4";
/// Below this many `ok` operations a history proves little: the run must have made progress.
const OK_OPS_MIN: usize = 100;

fn detcd_check_bin() -> PathBuf {
    detcd_tests::built_bin("detcd-check", "DETCD_CHECK_BIN", "detcd-checks")
}

/// Records `workload` against `endpoints` into `dir` and checks the outcome: exit 0, the
/// verdicts of the checkers that apply (linearizability, watch, Elle), and a history that shows
/// the workload really ran.
fn record_and_check(endpoints: &str, workload: &str, seed: u64, dir: &Path) {
    let out = dir.join(format!("{workload}.jsonl"));
    let run = Command::new(detcd_check_bin())
        .args(["record", "--endpoints", endpoints, "--workload", workload, "--clients", CLIENTS])
        .args(["--duration", DURATION, "--seed", &seed.to_string(), "--no-progress", "--out"])
        .arg(&out)
        .output()
        .expect("run detcd-check record");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // Every checker that applies must have run and passed (`check` prints one line per checker).
    let verdicts: &[&str] = match workload {
        "append" => &["elle: strict serializable, no anomaly"],
        "watch" => &["linearizability: linearizable (", "watch: all guarantees hold"],
        _ => &["linearizability: linearizable ("],
    };
    assert!(
        run.status.success() && verdicts.iter().all(|v| stdout.contains(v)),
        "{workload} on {endpoints}: {}, expected {verdicts:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        run.status
    );
    let ops = read_history(std::io::BufReader::new(std::fs::File::open(&out).expect("the history file")))
        .expect("a valid history");
    let ok = |what: fn(&Request) -> bool| ops.iter().filter(|o| o.outcome == Outcome::Ok && what(&o.op)).count();
    let ok_ops = ok(|_| true);
    assert!(ok_ops >= OK_OPS_MIN, "{workload} on {endpoints}: only {ok_ops} ok operations of {}", ops.len());
    match workload {
        "register" => {
            let (puts, ranges) = (ok(|r| matches!(r, Request::Put(_))), ok(|r| matches!(r, Request::Range(_))));
            assert!(puts > 0 && ranges > 0, "{workload} on {endpoints}: {puts} puts and {ranges} ranges answered");
        }
        "txn" => assert!(ok(|r| matches!(r, Request::Txn(_))) > 0, "{workload}: no txn answered"),
        "append" => {
            let appended = ops.iter().any(|o| {
                o.outcome == Outcome::Ok
                    && matches!(&o.op, Request::ListTxn { ops } if ops.iter().any(|m| matches!(m, ListOp::Append { .. })))
            });
            assert!(appended, "{workload} on {endpoints}: no list_txn with an append succeeded");
        }
        "watch" => {
            let responses = ok(|r| matches!(r, Request::WatchResponse { .. }));
            assert!(ok(|r| matches!(r, Request::Watch(_))) > 0, "{workload} on {endpoints}: no watch created");
            assert!(responses > 0, "{workload} on {endpoints}: no watch response");
        }
        "lease" => {
            let grants = ok(|r| matches!(r, Request::LeaseGrant { .. }));
            let leased_puts = ok(|r| matches!(r, Request::Put(p) if p.lease != 0));
            let keepalives = ok(|r| matches!(r, Request::LeaseKeepalive { .. }));
            assert!(
                grants > 0 && leased_puts > 0 && keepalives > 0,
                "{workload} on {endpoints}: {grants} grants, {leased_puts} puts with a lease, {keepalives} keepalives"
            );
        }
        other => panic!("no expectations for {other}"),
    }
}

const WORKLOADS: [&str; 5] = ["register", "txn", "append", "watch", "lease"];

#[test]
fn record_against_etcd_3_4_is_linearizable() {
    let etcd = Etcd::start();
    let dir = TempDir::new("record-etcd");
    for (seed, workload) in WORKLOADS.iter().enumerate() {
        record_and_check(&etcd.endpoint(), workload, seed as u64, &dir.0);
    }
}

#[test]
fn record_against_one_detcd_member_is_linearizable() {
    let cluster = Cluster::start(1, "record-one");
    let dir = TempDir::new("record-one");
    for (seed, workload) in WORKLOADS.iter().enumerate() {
        record_and_check(&cluster.endpoints(), workload, 10 + seed as u64, &dir.0);
    }
}

/// The clients spread over the three members: followers answer too.
#[test]
fn record_against_three_detcd_members_is_linearizable() {
    let cluster = Cluster::start(3, "record-three");
    let dir = TempDir::new("record-three");
    for (seed, workload) in WORKLOADS.iter().enumerate() {
        record_and_check(&cluster.endpoints(), workload, 20 + seed as u64, &dir.0);
    }
}
