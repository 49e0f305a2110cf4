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
