//! `detcd`: an etcd v3–compatible key-value server. Flags and `ETCD_*` variables as etcd's;
//! `detcd --help` lists them.

use std::process::ExitCode;

#[cfg(not(madsim))]
use detcd_server::config::{usage, ServerConfig};
#[cfg(not(madsim))]
use detcd_server::disk::FileStorage;

/// Under `--cfg madsim` the member runs inside `detcd-sim` (through `detcd_server::serve`),
/// never as this binary.
#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!("detcd: built for the simulator (--cfg madsim); run it through detcd-sim");
    ExitCode::from(2)
}

#[cfg(not(madsim))]
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-version") {
        println!("detcd Version: {}\nAPI Version: {}", detcd_server::VERSION, detcd_server::grpc::ETCD_API_VERSION);
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let env: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k.starts_with("ETCD_")).collect();
    let config = match ServerConfig::parse(&args, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("detcd: {e}\n\n{}", usage());
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if config.log_json {
        // One object per line: "timestamp", "level", "fields" (with "message"), "target".
        logs.json().init();
    } else {
        logs.init();
    }

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("detcd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let storage = FileStorage::open(&config.data_dir).map_err(|e| e.to_string())?;
        // Production needs no replay: the seed only has to differ between members and runs.
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                ^ (std::process::id() as u64).rotate_left(32);
        detcd_server::serve(config, storage, seed, detcd_server::clock::Clock::start(), shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("detcd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGINT or SIGTERM.
#[cfg(not(madsim))]
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
