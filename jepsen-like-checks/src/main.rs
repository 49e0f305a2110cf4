//! `detcd-check`: consistency checkers for etcd histories (not built yet).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("detcd-check: the checkers are not built yet. See README.md.");
    ExitCode::from(2)
}
