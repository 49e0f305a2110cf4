//! `detcd-sim`: seeded deterministic simulation of detcd clusters.
//!
//!     RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim cargo run -p detcd-sim -- run --seed 7
//!
//! `run --seed N [--members 3] [--clients 3] [--duration-s 20] [--check-determinism]` prints a
//! summary and, on failure, the one line that replays it.

use std::process::ExitCode;

#[cfg(not(madsim))]
fn main() -> ExitCode {
    eprintln!(
        "detcd-sim runs detcd inside the madsim simulator and must be built for it:\n  \
         RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run -p detcd-sim -- run --seed 1"
    );
    ExitCode::from(2)
}

#[cfg(madsim)]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run_command(&args[1..]),
        Some("sweep") => sweep_command(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(madsim)]
const USAGE: &str =
    "usage:\n  detcd-sim run --seed N [--members 3] [--clients 3] [--duration-s 20] [--check-determinism]\n  \
                     detcd-sim sweep --seeds A..B [--members 3] [--clients 3] [--duration-s 20]";

#[cfg(madsim)]
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[cfg(madsim)]
fn options(args: &[String], seed: u64) -> detcd_sim::run::Options {
    let number = |name: &str, default: u64| flag(args, name).and_then(|v| v.parse().ok()).unwrap_or(default);
    detcd_sim::run::Options {
        seed,
        members: number("--members", 3) as usize,
        clients: number("--clients", 3) as usize,
        duration: std::time::Duration::from_secs(number("--duration-s", 20)),
    }
}

#[cfg(madsim)]
fn replay_line(o: &detcd_sim::run::Options) -> String {
    format!(
        "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo run -p detcd-sim -- run --seed {} --members {} --clients {} --duration-s {}",
        o.seed,
        o.members,
        o.clients,
        o.duration.as_secs()
    )
}

/// Runs one seed in a child process (madsim's statics are shared within a process, so one
/// seed per process is what replays exactly); returns its output and success.
#[cfg(madsim)]
fn run_child(o: &detcd_sim::run::Options) -> (String, bool) {
    let exe = std::env::current_exe().expect("own path");
    let out = std::process::Command::new(exe)
        .args(["run", "--seed", &o.seed.to_string(), "--members", &o.members.to_string()])
        .args(["--clients", &o.clients.to_string(), "--duration-s", &o.duration.as_secs().to_string()])
        .output()
        .expect("run a seed");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.success())
}

#[cfg(madsim)]
fn trace_hash(output: &str) -> Option<String> {
    output.split("trace hash ").nth(1).map(|s| s.split_whitespace().next().unwrap_or("").to_string())
}

#[cfg(madsim)]
fn run_command(args: &[String]) -> ExitCode {
    let seed = flag(args, "--seed").and_then(|v| v.parse().ok()).unwrap_or(1);
    let o = options(args, seed);
    if args.iter().any(|a| a == "--check-determinism") {
        let (first, ok1) = run_child(&o);
        let (second, _) = run_child(&o);
        print!("{first}");
        let (a, b) = (trace_hash(&first), trace_hash(&second));
        if a.is_none() || a != b {
            println!(
                "NOT DETERMINISTIC: trace hashes {a:?} and {b:?}\nreplay: {} --check-determinism",
                replay_line(&o)
            );
            return ExitCode::FAILURE;
        }
        println!("deterministic: two runs, one trace hash");
        return if ok1 { ExitCode::SUCCESS } else { ExitCode::FAILURE };
    }
    let report = detcd_sim::run::run(&o);
    println!(
        "seed {}: {} operations, {} acknowledged writes, {} faults ({}), trace hash {:016x}",
        o.seed,
        report.operations,
        report.acknowledged_writes,
        report.faults.len(),
        report.faults.join("; "),
        report.trace_hash
    );
    match report.failure {
        None => {
            println!("ok: every acknowledged write is on every member, and all members agree");
            ExitCode::SUCCESS
        }
        Some(failure) => {
            println!("FAILED: {failure}\nreplay: {}", replay_line(&o));
            ExitCode::FAILURE
        }
    }
}

#[cfg(madsim)]
fn sweep_command(args: &[String]) -> ExitCode {
    let Some((a, b)) = flag(args, "--seeds").and_then(|r| {
        let (a, b) = r.split_once("..")?;
        Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
    }) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut failed = Vec::new();
    let total = b.saturating_sub(a);
    for (done, seed) in (a..b).enumerate() {
        let o = options(args, seed);
        let (output, ok) = run_child(&o);
        if !ok {
            failed.push(seed);
            print!("{output}");
        }
        eprint!("\rseeds {}/{total}, {} failed", done + 1, failed.len());
    }
    eprintln!();
    if failed.is_empty() {
        println!("sweep {a}..{b}: all {total} seeds passed");
        ExitCode::SUCCESS
    } else {
        println!("sweep {a}..{b}: failing seeds {failed:?}");
        ExitCode::FAILURE
    }
}
