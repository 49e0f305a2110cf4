//! The binary: verdict lines and exit codes.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use detcd_checks::history::{write_history, Operation};

fn write(name: &str, ops: &[Operation]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("detcd-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    write_history(std::fs::File::create(&path).unwrap(), ops).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_detcd-check")).args(args).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap())
}

#[test]
fn verdicts_and_exit_codes() {
    let good = write("good.jsonl", &[put(1, 0, 10, "a", "1", 2), get(2, 20, 30, "a", 2, Some(kv("a", "1", 2, 2, 1)))]);
    let stale = write(
        "stale.jsonl",
        &[put(1, 0, 10, "a", "1", 2), put(2, 20, 30, "a", "2", 3), get(3, 40, 50, "a", 2, Some(kv("a", "1", 2, 2, 1)))],
    );
    let good = good.to_str().unwrap();
    let stale = stale.to_str().unwrap();

    let (code, out) = run(&["check", good]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": linearizable (etcd model;"), "{out}");

    let (code, out) = run(&["check", "--model", "register", good, stale]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(": linearizable (register model;") && out.contains("NOT LINEARIZABLE"), "{out}");
    assert!(out.contains("op 2 client 3 [40 .. 50] range \"a\" -> rev 2 [\"a\"=\"1\""), "{out}");

    let (code, out) = run(&["check", "--model=register", "--budget-ms", "0", good]);
    assert_eq!(code, 0, "a tiny history needs no clock check: {out}");

    let (code, out) = run(&["check", "/nonexistent/history.jsonl"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error"), "{out}");

    let bad_line = std::env::temp_dir().join(format!("detcd-check-cli-{}/bad.jsonl", std::process::id()));
    std::fs::write(&bad_line, "{\"client\":1}\n").unwrap();
    let (code, out) = run(&["check", bad_line.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error: line 1: missing field"), "{out}");

    let (code, out) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("USAGE"));
    for bad in [&["check"][..], &["frobnicate"], &["check", "--model", "paxos", good], &["check", "--budget-ms"], &[]] {
        let (code, out) = run(bad);
        assert_eq!(code, 2, "{bad:?}: {out}");
    }
}

#[test]
fn a_failing_history_gets_a_verdict_per_checker_and_an_html_report() {
    use detcd_checks::history::{ListOp, Outcome, Request, Response, WatchRequest};
    let watch = Operation {
        client: 9,
        call_ns: 0,
        return_ns: 1,
        op: Request::Watch(WatchRequest {
            watcher: 1,
            key: "a".into(),
            range_end: Default::default(),
            start_revision: 2,
            prev_kv: false,
            progress_notify: false,
            filters: vec![],
        }),
        outcome: Outcome::Ok,
        output: Some(Response::Watch { header_revision: 1, watch_id: 0 }),
        error: None,
    };
    // The watcher is told about revision 3 but never got the put of revision 2.
    let progress = Operation {
        client: 9,
        call_ns: 60,
        return_ns: 60,
        op: Request::WatchResponse { watcher: 1 },
        outcome: Outcome::Ok,
        output: Some(Response::WatchResponse {
            header_revision: 3,
            watch_id: 0,
            events: vec![],
            compact_revision: 0,
            canceled: false,
            fragment: false,
        }),
        error: None,
    };
    // A list-append read of a value nobody appended.
    let list_txn = Operation {
        client: 8,
        call_ns: 0,
        return_ns: 5,
        op: Request::ListTxn { ops: vec![ListOp::Read { key: "x".into() }] },
        outcome: Outcome::Ok,
        output: Some(Response::ListTxn { header_revision: 1, results: vec![Some(vec![7])] }),
        error: None,
    };
    let history = [
        put(1, 0, 10, "a", "1", 2),
        put(2, 20, 30, "a", "2", 3),
        get(3, 40, 50, "a", 2, Some(kv("a", "1", 2, 2, 1))),
        watch,
        progress,
        list_txn,
    ];
    let path = write("all-bad.jsonl", &history);
    let path = path.to_str().unwrap();
    let html = format!("{path}.html");
    let _ = std::fs::remove_file(&html);
    let (code, out) = run(&["check", path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("linearizability: NOT LINEARIZABLE"), "{out}");
    assert!(out.contains("watch: VIOLATED") && out.contains("watcher 1: reliable"), "{out}");
    assert!(out.contains("elle: ANOMALIES") && out.contains("garbage-read"), "{out}");
    assert!(out.contains(&format!("report written to {html}")), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("class=\"op blamed\""), "no timeline with blamed ops");
    assert!(page.contains("Model state along the longest linearizable prefix"));
    assert!(!page.contains("src=") && !page.contains("href="), "the report must be self-contained");

    // --report puts it elsewhere; a passing history writes none.
    let elsewhere = std::env::temp_dir().join(format!("detcd-check-cli-{}/elsewhere.html", std::process::id()));
    let (code, out) = run(&["check", "--report", elsewhere.to_str().unwrap(), path]);
    assert_eq!(code, 1, "{out}");
    assert!(elsewhere.exists(), "{out}");
    let good = write("good-again.jsonl", &[put(1, 0, 10, "a", "1", 2)]);
    let (code, out) = run(&["check", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("report written"), "{out}");
}
