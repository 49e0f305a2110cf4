//! `detcd-sim`: seeded deterministic simulation of detcd clusters.
//!
//!     RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim cargo run -p detcd-sim -- run --seed 42
//!
//! See [`USAGE`] for the commands. Every seed runs in a process of its own (madsim's statics
//! are per process), so `sweep`, `shrink` and `--check-determinism` start this binary again.

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
    // The members' logs, for a seed being debugged: DETCD_SIM_LOG=info (or any tracing filter).
    if let Ok(filter) = std::env::var("DETCD_SIM_LOG") {
        let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into());
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let result = match args.first().map(String::as_str) {
        Some(_) if cli::unknown_argument(&args[1..]).is_some() => {
            Err(format!("unknown argument {:?}", cli::unknown_argument(&args[1..]).unwrap_or_default()))
        }
        Some("run") => cli::run_command(&args[1..]),
        Some("sweep") => cli::sweep_command(&args[1..]),
        Some("shrink") => cli::shrink_command(&args[1..]),
        _ => Err(String::new()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("detcd-sim: {e}");
            }
            eprintln!("{}", cli::USAGE);
            ExitCode::from(2)
        }
    }
}

#[cfg(madsim)]
mod cli {
    use std::path::{Path, PathBuf};
    use std::process::{Command, ExitCode};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::{Duration, Instant};

    use detcd_checks::linearizability::{Budget, CheckOptions, Verdict};
    use detcd_checks::models::ClockJump;
    use detcd_checks::suite::{check_all, Outcome as CheckOutcome, SuiteOptions};
    use detcd_checks::workload::Workload;
    use detcd_checks::{history, report, ModelKind};
    use detcd_sim::run::{read_schedule, Options};
    use detcd_sim::schedule::{FaultKind, Schedule, ScheduleOptions};

    pub const USAGE: &str = "\
usage:
  detcd-sim run --seed N [--nodes 3|5] [--clients 3] [--duration 20s] [--faults all|none|KIND,…]
                [--workload register,txn,append,watch|lease|all] [--out-dir target/detcd-sim] [--schedule FILE] [--drop-events I,J,…] [--print-schedule] [--verbose]
                [--check-determinism] [--strict (a checker's undecided verdict fails the run)]
                [--canary NAME (a build with --features canary)]
  detcd-sim sweep --seeds A..B [--jobs 2] [--until-failure] [the run flags]
  detcd-sim shrink --seed N [the run flags]
fault kinds: partition, one-way, isolate-leader, network, crash, pause, clock, power, fsync,
             corrupt, move-leader, compact (the seed turns each allowed kind on or off)
--members and --duration-s N are aliases of --nodes and --duration Ns.";

    /// The line a run prints when a checker could not decide (sweep lists those seeds).
    const INCONCLUSIVE: &str = "INCONCLUSIVE";
    /// Where histories and reports go, unless `--out-dir` says.
    const DEFAULT_OUT_DIR: &str = "target/detcd-sim";
    /// Wall-clock budget of the linearizability search per run (running out is a failure).
    const CHECK_BUDGET_MS: u64 = 60_000;
    /// Memory budget of the search's cache (about 1.5 times this is used at the peak, and a
    /// sweep runs two seeds at once). Running out fails the run, so it is the checker's default
    /// of 2 GiB: at 512 MiB, `--seed 48 --nodes 5` ran out on a history that is linearizable
    /// (2.4 M steps).
    const CHECK_CACHE_MIB: u64 = 2_048;
    /// Step budget of the search: unlike the clock it runs out at the same step on every replay,
    /// so running out of it fails the run (about 20 s of a debug build's search).
    const CHECK_STEP_BUDGET: u64 = 20_000_000;

    /// Flags that take a value, as the run command knows them (sweep and shrink pass them on).
    const RUN_FLAGS: [&str; 12] = [
        "--canary",
        "--out-dir",
        "--nodes",
        "--members",
        "--clients",
        "--duration",
        "--duration-s",
        "--faults",
        "--workload",
        "--schedule",
        "--drop-events",
        "--seed",
    ];

    /// Flags without a value.
    const SWITCHES: [&str; 5] = ["--check-determinism", "--print-schedule", "--strict", "--verbose", "--until-failure"];
    /// Flags of sweep with a value (it passes the run flags on).
    const SWEEP_FLAGS: [&str; 2] = ["--seeds", "--jobs"];

    /// The first argument no command knows (a typo such as `--node 5` would otherwise run the
    /// defaults silently), if any: every argument is a flag, a switch, or a flag's value.
    pub fn unknown_argument(args: &[String]) -> Option<String> {
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            if RUN_FLAGS.contains(&a) || SWEEP_FLAGS.contains(&a) {
                i += 2;
            } else if SWITCHES.contains(&a) {
                i += 1;
            } else {
                return Some(a.to_string());
            }
        }
        None
    }

    /// The seed decides the mix: one run in a few is all list-append (`run::APPEND_ONLY_ONE_IN`),
    /// of the others one in a few all leases with attached keys (`run::LEASE_ONLY_ONE_IN`), and
    /// otherwise each client draws register, txn, watch or lease.
    const DEFAULT_WORKLOADS: &str = "register,txn,append,watch,lease";

    /// `all` or a comma-separated list of workload names.
    fn parse_workloads(list: &str) -> Result<Vec<Workload>, String> {
        if list == "all" {
            return Ok(Workload::ALL.to_vec());
        }
        let workloads: Vec<Workload> = list.split(',').map(str::parse).collect::<Result<_, _>>()?;
        if workloads.is_empty() {
            return Err("--workload: name at least one".into());
        }
        Ok(workloads)
    }

    fn flag(args: &[String], name: &str) -> Option<String> {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
    }

    fn has(args: &[String], name: &str) -> bool {
        args.iter().any(|a| a == name)
    }

    /// `60s`, `500ms`, `2m`, or plain seconds.
    fn parse_duration(s: &str) -> Result<Duration, String> {
        let bad = || format!("{s:?} is not a duration (60s, 500ms, 2m)");
        let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: u64 = number.parse().map_err(|_| bad())?;
        match unit {
            "" | "s" => Ok(Duration::from_secs(n)),
            "ms" => Ok(Duration::from_millis(n)),
            "m" => Ok(Duration::from_secs(n * 60)),
            _ => Err(bad()),
        }
    }

    /// The run's flags, parsed and checked.
    struct RunFlags {
        seed: u64,
        members: usize,
        clients: usize,
        duration: Duration,
        faults: String,
        workload: String,
        schedule_file: Option<PathBuf>,
        drop_events: Vec<usize>,
        out_dir: Option<String>,
        /// A deliberate bug every member runs with (builds with the `canary` feature only).
        canary: Option<String>,
        strict: bool,
    }

    fn run_flags(args: &[String]) -> Result<RunFlags, String> {
        for (i, a) in args.iter().enumerate() {
            if a.starts_with("--") && RUN_FLAGS.contains(&a.as_str()) && args.get(i + 1).is_none() {
                return Err(format!("{a} needs a value"));
            }
        }
        let number = |name: &str| -> Result<Option<u64>, String> {
            flag(args, name).map(|v| v.parse::<u64>().map_err(|_| format!("{name} {v:?} is not a number"))).transpose()
        };
        let seed = number("--seed")?.unwrap_or(1);
        let members = number("--nodes")?.or(number("--members")?).unwrap_or(3) as usize;
        if !(1..=9).contains(&members) {
            return Err(format!("--nodes {members}: 1 to 9 members"));
        }
        let clients = number("--clients")?.unwrap_or(3) as usize;
        if !(1..=50).contains(&clients) {
            return Err(format!("--clients {clients}: 1 to 50 clients"));
        }
        let duration = match (flag(args, "--duration"), number("--duration-s")?) {
            (Some(d), _) => parse_duration(&d)?,
            (None, Some(s)) => Duration::from_secs(s),
            (None, None) => Duration::from_secs(20),
        };
        let faults = flag(args, "--faults").unwrap_or_else(|| "all".into());
        FaultKind::parse_list(&faults)?;
        let workload = flag(args, "--workload").unwrap_or_else(|| DEFAULT_WORKLOADS.into());
        parse_workloads(&workload)?;
        let drop_events = match flag(args, "--drop-events") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|i| i.parse::<usize>().map_err(|_| format!("--drop-events: {i:?} is not an event number")))
                .collect::<Result<_, _>>()?,
        };
        let canary = flag(args, "--canary");
        if let Some(name) = &canary {
            set_canary(name)?;
        }
        Ok(RunFlags {
            canary,
            seed,
            members,
            clients,
            duration,
            faults,
            workload,
            schedule_file: flag(args, "--schedule").map(PathBuf::from),
            drop_events,
            out_dir: flag(args, "--out-dir"),
            strict: has(args, "--strict"),
        })
    }

    impl RunFlags {
        /// The schedule this run injects: the file's, or the seed's; without dropped events.
        fn schedule(&self) -> Result<Schedule, String> {
            let schedule = match &self.schedule_file {
                Some(path) => read_schedule(path)?,
                None => self.generated().0,
            };
            Ok(schedule.without(&self.drop_events))
        }

        fn generated(&self) -> (Schedule, Vec<FaultKind>) {
            let kinds = FaultKind::parse_list(&self.faults).expect("checked in run_flags");
            Schedule::generate(&ScheduleOptions {
                seed: self.seed,
                members: self.members,
                duration_ms: self.duration.as_millis() as u64,
                kinds,
            })
        }

        /// The flags that reproduce this run, with another schedule file if given.
        fn args(&self, schedule_file: Option<&Path>) -> Vec<String> {
            let mut a = vec![
                "--seed".to_string(),
                self.seed.to_string(),
                "--nodes".into(),
                self.members.to_string(),
                "--clients".into(),
                self.clients.to_string(),
                "--duration".into(),
                format!("{}ms", self.duration.as_millis()),
                "--faults".into(),
                self.faults.clone(),
                "--workload".into(),
                self.workload.clone(),
            ];
            if let Some(dir) = &self.out_dir {
                a.extend(["--out-dir".into(), dir.clone()]);
            }
            if let Some(name) = &self.canary {
                a.extend(["--canary".into(), name.clone()]);
            }
            if self.strict {
                a.push("--strict".into());
            }
            match schedule_file.or(self.schedule_file.as_deref()) {
                Some(path) => a.extend(["--schedule".into(), path.display().to_string()]),
                None if !self.drop_events.is_empty() => {
                    let list: Vec<String> = self.drop_events.iter().map(usize::to_string).collect();
                    a.extend(["--drop-events".into(), list.join(",")]);
                }
                None => {}
            }
            a
        }
    }

    /// How far any member's clock may run ahead of the simulated clock by drift over the run,
    /// and the clock jumps the schedule injects. A leader whose clock ran ahead expires leases
    /// that much early by its own reckoning — what a real etcd does too — so the lease model is
    /// told to allow it.
    fn lease_clock_slack(schedule: &Schedule, duration: Duration) -> (u64, Vec<ClockJump>) {
        let jumps = schedule
            .events
            .iter()
            .filter_map(|event| match event.fault {
                // The jump happens exactly at its event's time (`run` sleeps until then and
                // awaits nothing before it), and the history's clock starts after the
                // simulation's: at `at_ms` or earlier in history time. Later would be unsound
                // (a jump after a renewal taken for one before it).
                detcd_sim::schedule::Fault::ClockJump { member, by_ms } => {
                    Some(ClockJump { at_ns: event.at_ms * 1_000_000, server: member as u64, by_ns: by_ms * 1_000_000 })
                }
                _ => None,
            })
            .collect();
        // The liveness phase after the faults lasts well under a minute.
        let run_ms = duration.as_millis() as u64 + 60_000;
        let drift_ms = run_ms * detcd_sim::run::CLOCK_DRIFT_PPM_MAX.unsigned_abs() / 1_000_000;
        (drift_ms, jumps)
    }

    fn replay_line(args: &[String]) -> String {
        let (target_dir, features) =
            if has(args, "--canary") { ("target/madsim-canary", " --features canary") } else { ("target/madsim", "") };
        format!(
            "RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR={target_dir} cargo run --profile sim -p detcd-sim{features} -- run {}",
            args.join(" ")
        )
    }

    /// Switches a canary bug on for this process (and so for every member it simulates).
    #[cfg(feature = "canary")]
    fn set_canary(name: &str) -> Result<(), String> {
        detcd_engine::canary::set(Some(name.parse()?));
        Ok(())
    }

    #[cfg(not(feature = "canary"))]
    fn set_canary(name: &str) -> Result<(), String> {
        Err(format!(
            "--canary {name}: this detcd-sim was built without canaries; build it with \
             RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim-canary cargo build -p detcd-sim --features canary"
        ))
    }

    /// Runs `run <args>` in a child process; its output and whether it passed.
    fn run_child(args: &[String]) -> Result<(String, bool), String> {
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        let out = Command::new(exe).arg("run").args(args).output().map_err(|e| format!("start a run: {e}"))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() && out.status.code() != Some(1) {
            // Not a check's verdict: a panic or a signal. Keep its words.
            text.push_str(&format!("run exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        Ok((text, out.status.success()))
    }

    fn trace_hash(output: &str) -> Option<String> {
        output.lines().find_map(|l| l.strip_prefix("trace hash ")).map(str::to_owned)
    }

    pub fn run_command(args: &[String]) -> Result<ExitCode, String> {
        let flags = run_flags(args)?;
        let schedule = flags.schedule()?;
        if has(args, "--print-schedule") {
            print!("{schedule}");
            return Ok(ExitCode::SUCCESS);
        }
        if has(args, "--check-determinism") {
            let child_args = flags.args(None);
            let (first, ok) = run_child(&child_args)?;
            let (second, _) = run_child(&child_args)?;
            print!("{first}");
            let (a, b) = (trace_hash(&first), trace_hash(&second));
            if a.is_none() || a != b {
                println!(
                    "NOT DETERMINISTIC: trace hashes {a:?} and {b:?}\nreplay: {} --check-determinism",
                    replay_line(&child_args)
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("deterministic: two runs, one trace hash");
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        let kinds_on = match &flags.schedule_file {
            Some(path) => format!("from {}", path.display()),
            None => {
                let on: Vec<&str> = flags.generated().1.iter().map(|k| k.name()).collect();
                format!("kinds on: {}", if on.is_empty() { "none".into() } else { on.join(", ") })
            }
        };
        let options = Options {
            seed: flags.seed,
            members: flags.members,
            clients: flags.clients,
            duration: flags.duration,
            schedule: schedule.clone(),
            workloads: parse_workloads(&flags.workload).expect("checked in run_flags"),
        };
        let started = Instant::now();
        let report = detcd_sim::run::run(&options);
        let wall = started.elapsed();
        println!(
            "seed {}: {} members, {} clients, {:?} of faults, workload {}",
            flags.seed, flags.members, flags.clients, flags.duration, flags.workload
        );
        println!("schedule: {} events ({kinds_on})", schedule.events.len());
        let injected: Vec<String> = report.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("faults injected: {}", if injected.is_empty() { "none".into() } else { injected.join(", ") });
        let workloads: Vec<String> = report.client_workloads.iter().map(Workload::to_string).collect();
        println!("clients' workloads: {}", workloads.join(", "));
        println!(
            "operations {}, acknowledged puts {} ({} checked by hash only: compacted)",
            report.operations, report.acknowledged_writes, report.acks_compacted
        );
        println!(
            "simulated {:.1}s in {:.2}s of wall time ({:.0}x)",
            report.simulated.as_secs_f64(),
            wall.as_secs_f64(),
            report.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9)
        );
        // The history, on disk for `detcd-check` and people; then the checkers on it.
        let dir = PathBuf::from(flags.out_dir.clone().unwrap_or_else(|| DEFAULT_OUT_DIR.into()));
        let history_path = dir.join(format!("seed-{}.history.jsonl", flags.seed));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = std::fs::File::create(&history_path).map_err(|e| format!("{}: {e}", history_path.display()))?;
        history::write_history(std::io::BufWriter::new(file), &report.history)
            .map_err(|e| format!("{}: {e}", history_path.display()))?;
        let (slack_ms, jumps) = lease_clock_slack(&schedule, flags.duration);
        println!("history: {}", history_path.display());
        let suite = SuiteOptions {
            model: ModelKind::Etcd,
            linearizability: CheckOptions {
                budget_ms: CHECK_BUDGET_MS,
                cache_budget_mib: CHECK_CACHE_MIB,
                step_budget: CHECK_STEP_BUDGET,
                lease_clock_slack_ms: slack_ms,
                lease_clock_jumps: jumps,
            },
            ..SuiteOptions::default()
        };
        let verdicts = check_all(&report.history, &suite);
        print!("{}", report::text(&verdicts, "checker "));
        let mut failure = report.failure.clone();
        if !verdicts.passed() {
            let html = dir.join(format!("seed-{}.report.html", flags.seed));
            let file = std::fs::File::create(&html).map_err(|e| format!("{}: {e}", html.display()))?;
            let title = format!("detcd-sim seed {}", flags.seed);
            report::write_html(std::io::BufWriter::new(file), &title, &report.history, &verdicts)
                .map_err(|e| format!("{}: {e}", html.display()))?;
            println!("report: {}", html.display());
            // A search that ran out of wall-clock time proved nothing either way, and whether it
            // does hangs on the machine's load: that alone is a failure only with --strict. Any
            // other undecided verdict (the step or memory budget, a history a checker cannot
            // judge) is the same on every replay, and is a failure like a violation.
            let out_of_wall_clock = matches!(
                &verdicts.linearizability,
                Some(Ok(c)) if matches!(c.result.verdict, Verdict::Unknown { budget: Budget::Time, .. })
            );
            let failed = |o: Option<CheckOutcome>| o.is_some_and(|o| o != CheckOutcome::Pass);
            let decided_wrong = failed(verdicts.watch_outcome())
                || failed(verdicts.elle_outcome())
                || (failed(verdicts.linearizability_outcome()) && !out_of_wall_clock);
            if decided_wrong || flags.strict {
                failure.get_or_insert_with(|| "the checkers found the history wrong (see above)".into());
            } else {
                println!(
                    "{INCONCLUSIVE}: a checker could not decide within its budget (see above; --strict fails on it)"
                );
            }
        }
        if has(args, "--verbose") {
            println!("what happened:");
            for line in &report.fault_log {
                println!("  {line}");
            }
        }
        let hash = format!("{:016x}", report.trace_hash);
        match failure {
            None => {
                println!("verdict: ok: progress after healing, members converged, every acknowledged write is on every running member");
                println!("trace hash {hash}");
                Ok(ExitCode::SUCCESS)
            }
            Some(failure) => {
                if !has(args, "--verbose") {
                    println!("what happened:");
                    for line in &report.fault_log {
                        println!("  {line}");
                    }
                }
                println!("verdict: FAILED: {failure}");
                println!("trace hash {hash}");
                println!("replay: {}", replay_line(&flags.args(None)));
                Ok(ExitCode::FAILURE)
            }
        }
    }

    /// `A..B`: seeds A to B-1.
    fn seed_range(s: &str) -> Result<(u64, u64), String> {
        let bad = || format!("--seeds {s:?}: expected A..B");
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
    }

    /// The run flags in `args`, without sweep's own and without `--seed`.
    fn passed_on(args: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < args.len() {
            match args[i].as_str() {
                "--seeds" | "--jobs" | "--seed" => i += 2,
                _ => {
                    out.push(args[i].clone());
                    i += 1;
                }
            }
        }
        out
    }

    pub fn sweep_command(args: &[String]) -> Result<ExitCode, String> {
        let (a, b) = seed_range(&flag(args, "--seeds").ok_or("sweep needs --seeds A..B")?)?;
        let jobs: usize = flag(args, "--jobs").map_or(Ok(2), |j| j.parse().map_err(|_| format!("--jobs {j:?}")))?;
        let jobs = jobs.clamp(1, 64);
        let common = passed_on(args);
        run_flags(&common)?;
        let total = b.saturating_sub(a);
        // Hunting a canary: stop handing out seeds once one failed (the seeds in flight finish).
        let until_failure = has(args, "--until-failure");
        let next = Arc::new(AtomicU64::new(a));
        let (tx, rx) = mpsc::channel();
        let mut workers = Vec::new();
        for _ in 0..jobs {
            let (next, tx, common) = (next.clone(), tx.clone(), common.clone());
            workers.push(std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= b {
                    return;
                }
                let mut child = vec!["--seed".to_string(), seed.to_string()];
                child.extend(common.iter().cloned());
                let flags = run_flags(&child).expect("checked before");
                let result = run_child(&flags.args(None));
                if tx.send((seed, flags.args(None), result)).is_err() {
                    return;
                }
            }));
        }
        drop(tx);
        let started = Instant::now();
        let mut failed: Vec<(u64, String)> = Vec::new();
        let mut inconclusive: Vec<u64> = Vec::new();
        let mut done = 0;
        for (seed, child_args, result) in rx {
            done += 1;
            let (output, ok) = result?;
            if ok && output.lines().any(|l| l.starts_with(INCONCLUSIVE)) {
                inconclusive.push(seed);
            }
            if !ok {
                print!("{output}");
                failed.push((seed, replay_line(&child_args)));
                if until_failure {
                    next.store(b, Ordering::Relaxed);
                }
            }
            let minutes = started.elapsed().as_secs_f64() / 60.0;
            eprint!(
                "\rseeds {done}/{total}, {} failed, {:.1} seeds/min   ",
                failed.len(),
                done as f64 / minutes.max(1e-9)
            );
        }
        eprintln!();
        for w in workers {
            let _ = w.join();
        }
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        if !inconclusive.is_empty() {
            inconclusive.sort_unstable();
            println!(
                "{INCONCLUSIVE} (a checker ran out of its budget; not counted as failures): seeds {inconclusive:?}"
            );
        }
        if failed.is_empty() {
            println!("sweep {a}..{b}: all {total} seeds passed ({:.1} seeds/min)", total as f64 / minutes.max(1e-9));
            Ok(ExitCode::SUCCESS)
        } else {
            println!("sweep {a}..{b}: {} of {total} seeds failed:", failed.len());
            for (seed, line) in &failed {
                println!("  seed {seed}: {line}");
            }
            Ok(ExitCode::FAILURE)
        }
    }

    /// Drops fault events one at a time, then halves the windows, while the run still fails.
    pub fn shrink_command(args: &[String]) -> Result<ExitCode, String> {
        let flags = run_flags(args)?;
        let mut schedule = flags.schedule()?;
        let scratch = std::env::temp_dir().join(format!("detcd-sim-shrink-{}.schedule", std::process::id()));
        let fails = |s: &Schedule| -> Result<bool, String> {
            std::fs::write(&scratch, s.to_string()).map_err(|e| format!("{}: {e}", scratch.display()))?;
            Ok(!run_child(&flags.args(Some(&scratch)))?.1)
        };
        if !fails(&schedule)? {
            println!("seed {}: the run passes; nothing to shrink", flags.seed);
            return Ok(ExitCode::SUCCESS);
        }
        let mut attempts = 1;
        eprintln!("shrinking {} events", schedule.events.len());
        // From the last event back: later events depend on earlier ones less often than the
        // other way round, and indexes before the one dropped stay valid.
        let mut i = schedule.events.len();
        while i > 0 {
            i -= 1;
            let candidate = schedule.without(&[i]);
            attempts += 1;
            if fails(&candidate)? {
                schedule = candidate;
                eprintln!("  dropped event {i}: {} left", schedule.events.len());
            }
        }
        // Shorter windows, while it still fails (each halving is one attempt; stop at no change).
        loop {
            let candidate = schedule.halve_windows();
            if candidate == schedule {
                break;
            }
            attempts += 1;
            if !fails(&candidate)? {
                break;
            }
            schedule = candidate;
            eprintln!("  halved the windows");
        }
        let _ = std::fs::remove_file(&scratch);
        let out = PathBuf::from(format!("detcd-sim-seed-{}.schedule", flags.seed));
        std::fs::write(&out, schedule.to_string()).map_err(|e| format!("{}: {e}", out.display()))?;
        println!("seed {}: still fails with {} events ({attempts} runs):", flags.seed, schedule.events.len());
        print!("{schedule}");
        println!("schedule written to {}", out.display());
        println!("replay: {}", replay_line(&flags.args(Some(&out))));
        Ok(ExitCode::FAILURE)
    }
}
