//! `detcd-check`: consistency checkers for etcd histories. See `--help`.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;

use detcd_checks::history::read_history;
use detcd_checks::watch::WatchOptions;
use detcd_checks::{check_all, report, CheckOptions, ModelKind, SuiteOptions};

const HELP: &str = "\
detcd-check: consistency checkers for recorded etcd histories

USAGE:
    detcd-check check [--model register|etcd] [--budget-ms N] [--cache-budget-mib N] [--report PATH]
                      [--lease-clock-slack-ms N] [--ordered-progress-requests] FILE...
    detcd-check record --endpoints HOST:PORT[,HOST:PORT...] --workload register|txn|append|watch|lease
                       [--clients N] [--duration 10s] [--seed S] [--out FILE] [--op-timeout 1s]
                       [--keys N] [--key-prefix P] [--no-progress]
    detcd-check --help

COMMANDS:
    check    Check each history file (JSON lines, one operation per line; the format is
             documented in jepsen-like-checks/README.md) with every checker that applies:
             linearizability (KV, lease and compact operations), the watch checks (watch lines)
             and the Elle-style transaction checks (list_txn lines). Prints one verdict line per
             checker (more lines under a failure) and, when a file fails, writes an HTML report
             (timeline, blamed operations, model states) and prints its path.
    record   Drive a live etcd v3 cluster (etcd, detcd, ...) through its gRPC API with N clients
             for the duration, write the history they saw (default: WORKLOAD-DATE-TIME.jsonl in
             the current directory), then check it as `check` does. The keys live under a fresh
             prefix (or --key-prefix P, which must hold no key); nobody else may write to the
             cluster meanwhile. Revisions in the history count from the start of the recording.
             Defaults: --clients 4 --duration 10s --op-timeout 1s --keys 5, a seed from the clock.

OPTIONS (check):
    --model register|etcd   The sequential model [default: etcd].
                            register: each key an independent register (single-key range, put,
                              delete, compare-and-set txn); checked per key; no revisions.
                            etcd: the whole key space with the global revision; every response
                              field and header revision checked.
                            Only the etcd model has leases (expiry is time-driven: a lease may
                            expire any time after its TTL since its last renewal), compaction
                            and ranges at a past revision; with the register model they are an
                            error.
    --budget-ms N           Time allowed for each file's search [default: 60000]. Running out
                            gives \"unknown\", which is a failure.
    --cache-budget-mib N    Memory for the search's cache, estimated (peak use runs about 1.5
                            times it) [default: 2048]. Running out gives \"unknown\" too.
    --lease-clock-slack-ms N
                            How far the servers' clocks may have run ahead of the history's
                            over a lease's life: a lease may expire this much before its TTL
                            is up [default: 0]. detcd-sim passes what it injected (jumps and
                            drift); give the same number to re-check a simulator's history.
    --ordered-progress-requests
                            Hold answers to watch progress requests (watch_id -1) to the bookmark
                            guarantees. Off by default: etcd 3.4 sends them unordered with the
                            events (etcd issue #15220).
    --report PATH           Where the HTML report of a failing file goes [default: FILE.html, next
                            to the history]; with several files, PATH is for the first failing one
                            and the others get their default.
    -h, --help              Print this help.

EXIT STATUS:
    0  every checker passed on every file
    1  some checker found a violation, ran out of time (unknown), or a file could not be read
       or checked
    2  bad command line
";

mod record_cli;

struct Args {
    model: ModelKind,
    options: CheckOptions,
    watch: WatchOptions,
    report: Option<String>,
    files: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("no command given".into());
    };
    match command.as_str() {
        "-h" | "--help" | "help" => return Ok(None),
        "check" => {}
        other => return Err(format!("unknown command {other:?}")),
    }
    let mut parsed = Args {
        model: ModelKind::Etcd,
        options: CheckOptions::default(),
        watch: WatchOptions::default(),
        report: None,
        files: Vec::new(),
    };
    let mut rest = rest.iter();
    while let Some(arg) = rest.next() {
        // `--flag value` and `--flag=value` both work.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline.clone().or_else(|| rest.next().cloned()).ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "-h" | "--help" => return Ok(None),
            "--model" => parsed.model = value("--model")?.parse()?,
            "--report" => parsed.report = Some(value("--report")?),
            "--ordered-progress-requests" => parsed.watch.ordered_progress_requests = true,
            "--cache-budget-mib" => {
                let v = value("--cache-budget-mib")?;
                parsed.options.cache_budget_mib =
                    v.parse().map_err(|_| format!("--cache-budget-mib: {v:?} is not a number of MiB"))?;
            }
            "--lease-clock-slack-ms" => {
                let v = value("--lease-clock-slack-ms")?;
                parsed.options.lease_clock_slack_ms =
                    v.parse().map_err(|_| format!("--lease-clock-slack-ms: {v:?} is not a number of milliseconds"))?;
            }
            "--budget-ms" => {
                let v = value("--budget-ms")?;
                parsed.options.budget_ms =
                    v.parse().map_err(|_| format!("--budget-ms: {v:?} is not a number of milliseconds"))?;
            }
            "--" => parsed.files.extend(rest.by_ref().cloned()),
            f if f.starts_with('-') && f.len() > 1 => return Err(format!("unknown option {f:?}")),
            _ => parsed.files.push(arg.clone()),
        }
    }
    if parsed.files.is_empty() {
        return Err("check: no history file given".into());
    }
    Ok(Some(parsed))
}

/// Checks one file, prints its verdicts and, on a failure, writes the HTML report to `report`
/// (or FILE.html) and prints where; true if every checker passed. `report` is taken when used.
fn check_file(path: &str, args: &Args, report: &mut Option<String>) -> bool {
    let ops = match File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|f| read_history(BufReader::new(f)).map_err(|e| e.to_string()))
    {
        Ok(ops) => ops,
        Err(e) => {
            println!("{path}: error: {e}");
            return false;
        }
    };
    let verdicts =
        check_all(&ops, &SuiteOptions { model: args.model, linearizability: args.options.clone(), watch: args.watch });
    print!("{}", report::text(&verdicts, &format!("{path}: ")));
    if verdicts.passed() {
        return true;
    }
    let html_path = report.take().unwrap_or_else(|| format!("{path}.html"));
    let written = File::create(&html_path)
        .and_then(|f| report::write_html(std::io::BufWriter::new(f), &format!("detcd-check: {path}"), &ops, &verdicts));
    match written {
        Ok(()) => println!("{path}: report written to {html_path}"),
        Err(e) => println!("{path}: error: cannot write the report {html_path}: {e}"),
    }
    false
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "record") {
        return record_cli::main(&args[1..]);
    }
    let args = match parse_args(&args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("detcd-check: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let mut all_passed = true;
    let mut report = args.report.clone();
    for path in &args.files {
        all_passed &= check_file(path, &args, &mut report);
    }
    if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
