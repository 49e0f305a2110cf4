//! `detcd-sim`: seeded deterministic simulation of detcd clusters (not built yet).

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!("detcd-sim: the simulator is not built yet (it needs the detcd server). See README.md.");
    ExitCode::from(2)
}
