//! `detcd-bench`: etcd v3 load generator with etcd `benchmark`'s flags (see `--help`); the same
//! client against detcd and etcd, for side-by-side figures (tests/bench-compare.sh).
//!
//!     detcd-bench --endpoints 127.0.0.1:2379 --conns 4 --clients 64 --total 100000 put --val-size 256
//!
//! Exit status: 0 when the run completed (failed requests are counted in the report, not fatal),
//! 2 for bad flags or an unreachable endpoint.

use std::process::ExitCode;

use detcd_tests::bench::{run, Args, USAGE};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("detcd-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.has("help") || args.command == "help" {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = args.check_known() {
        eprintln!("detcd-bench: {e}\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("detcd-bench: no async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) if args.string("output", "text") == "json" => {
            println!("{}", report.json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("detcd-bench: {e}");
            ExitCode::from(2)
        }
    }
}
