//! `detcd`: an etcd v3–compatible key-value server.
//!
//! The server (driver, disk, gRPC services) is not built yet. Until it is, the binary answers
//! `--version` and `--help`, and otherwise says plainly that it cannot serve, exiting with
//! status 2, rather than pretending to be a server.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-version") {
        println!("detcd Version: {}", detcd_server::VERSION);
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "usage: detcd [flags]\n\ndetcd will accept etcd's flags (--name, --data-dir, --listen-client-urls, ...)."
        );
        println!("Today only the MVCC state machine exists (crate detcd-engine); the server does not.");
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "detcd {}: the server is not built yet — only the MVCC key-value state machine exists \
         (run `cargo bench -p detcd-engine` to exercise it). See README.md, section \"Status\".",
        detcd_server::VERSION
    );
    ExitCode::from(2)
}
