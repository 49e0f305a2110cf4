//! `detcd-bench` against one real detcd member, every workload with tiny totals: each run
//! completes, makes exactly the requests asked, and prints one parseable JSON report. No
//! assertion here is about time: the tool is a measurement, and this only keeps it working.

use std::process::{Command, Output};

use detcd_tests::{etcdctl, ok, Cluster};
use serde_json::Value;

fn bench(endpoints: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_detcd-bench"))
        .arg(format!("--endpoints={endpoints}"))
        .args(["--progress", "never"])
        .args(args)
        .output()
        .expect("run detcd-bench")
}

/// The JSON report of a run that must have succeeded without a failed request.
fn report(endpoints: &str, args: &[&str]) -> Value {
    let out = bench(endpoints, &[args, &["--output", "json"]].concat());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "detcd-bench {args:?} failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(report["errors_total"], 0, "{args:?}: {report}");
    report
}

#[test]
fn every_workload_runs_against_one_member_and_counts_its_requests() {
    let c = Cluster::start(1, "bench-smoke");
    let ep = c.endpoints();

    // Ten sequential keys, 50 puts over 4 clients on 2 connections: every key written.
    let put = report(
        &ep,
        &["--conns", "2", "--clients", "4", "--total", "50", "put", "--sequential-keys", "--key-space-size", "10"],
    );
    assert_eq!(
        (put["workload"].as_str(), put["ok"].as_u64(), put["count"].as_u64()),
        (Some("put"), Some(50), Some(50))
    );
    assert_eq!(put["latency_ms"]["samples"], 50);
    let buckets = put["latency_ms"]["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 50, "{put}");
    for p in ["p50", "p90", "p99"] {
        assert!(put["latency_ms"]["percentiles"][p].is_number(), "{p} in {put}");
    }
    let keys = ok(etcdctl(&ep, &["get", "00000000", "00000010", "--keys-only"]));
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    let expected: Vec<String> = (0..10).map(|k| format!("{k:08x}")).collect();
    assert_eq!(keys, expected, "the ten keys 00000000..00000009");

    for consistency in ["l", "s"] {
        let range = report(
            &ep,
            &["--clients", "3", "--total", "30", "range", "00000000", "00000010", "--consistency", consistency],
        );
        assert_eq!((range["ok"].as_u64(), range["consistency"].as_str()), (Some(30), Some(consistency)));
    }

    let txn = report(&ep, &["--clients", "2", "--total", "20", "txn-put", "--txn-ops", "3", "--key-space-size", "9"]);
    assert_eq!((txn["ok"].as_u64(), txn["txn_ops"].as_u64()), (Some(20), Some(3)));

    // Ten watchers of one key on two streams see every one of 20 puts: 200 events.
    let pid = c.members[0].pid().expect("the member runs").to_string();
    let watch = report(
        &ep,
        &[
            "--clients",
            "2",
            "--rss-pids",
            &pid,
            "watch",
            "--streams",
            "2",
            "--watch-per-stream",
            "5",
            "--put-total",
            "20",
        ],
    );
    assert_eq!((watch["unit"].as_str(), watch["count"].as_u64()), (Some("events"), Some(200)), "{watch}");
    assert_eq!((watch["puts"].as_u64(), watch["watchers"].as_u64()), (Some(20), Some(10)));
    assert!(watch["server_rss_kib_with_watchers"].as_u64().is_some_and(|kib| kib > 0), "{watch}");

    let latency = report(
        &ep,
        &["watch-latency", "--put-total", "10", "--put-rate", "0", "--streams", "2", "--watchers-per-stream", "2"],
    );
    assert_eq!(
        (latency["count"].as_u64(), latency["latency_ms"]["samples"].as_u64()),
        (Some(40), Some(40)),
        "{latency}"
    );

    let keepalive = report(&ep, &["--clients", "4", "--total", "40", "lease-keepalive"]);
    assert_eq!(keepalive["ok"], 40);
    let leases = ok(etcdctl(&ep, &["lease", "list"]));
    assert!(leases.contains("found 0 leases"), "the clients' leases are revoked at the end: {leases}");

    // A run bounded by --duration alone ends by itself.
    let timed = report(&ep, &["--duration", "300ms", "put"]);
    assert!(timed["ok"].as_u64().is_some_and(|n| n >= 1), "{timed}");
}

#[test]
fn text_report_and_refusals() {
    let c = Cluster::start(1, "bench-text");
    let ep = c.endpoints();
    let out = bench(&ep, &["--total", "5", "put", "--val-size", "16"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for part in ["Summary (put):", "Total:\t5 requests", "Response time histogram:", "Latency distribution:", "99% in"]
    {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }

    for (args, message) in [
        (&["put", "--consistency", "s"][..], "put does not take --consistency"),
        (&["range", "--consistency", "x", "k"][..], "--consistency: expected l or s"),
        (&["range"][..], "range takes KEY and an optional END"),
        (&["txn-put", "--txn-ops", "4", "--key-space-size", "2"][..], "a txn would put a key twice"),
        (&["--clients", "0", "put"][..], "--clients must be at least 1"),
        (&["get"][..], "unknown command \"get\""),
    ] {
        let out = bench(&ep, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
