//! `detcd-check record`: the command line around [`detcd_checks::record`].

use std::process::ExitCode;

#[cfg(not(madsim))]
pub fn main(args: &[String]) -> ExitCode {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use detcd_checks::history::write_history;
    use detcd_checks::record::{default_history_name, parse_duration, record, RecordOptions};
    use detcd_checks::{CheckOptions, ModelKind};

    let mut options = RecordOptions {
        endpoints: Vec::new(),
        workload: detcd_checks::workload::Workload::Register,
        clients: 4,
        duration: Duration::from_secs(10),
        seed: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        op_timeout: Duration::from_secs(1),
        keys: 5,
        key_prefix: None,
        progress: true,
    };
    let mut workload_given = false;
    let mut out = None;
    let parsed = (|| -> Result<(), String> {
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            // `--flag value` and `--flag=value` both work.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || inline.clone().or_else(|| rest.next().cloned()).ok_or(format!("{flag} needs a value"));
            let number = |v: String| v.parse::<u64>().map_err(|_| format!("{flag}: {v:?} is not a number"));
            match flag {
                "--endpoints" => options.endpoints = value()?.split(',').map(str::to_string).collect(),
                "--workload" => {
                    options.workload = value()?.parse()?;
                    workload_given = true;
                }
                "--clients" => options.clients = number(value()?)? as usize,
                "--keys" => options.keys = number(value()?)? as usize,
                "--seed" => options.seed = number(value()?)?,
                "--duration" => options.duration = parse_duration(&value()?)?,
                "--op-timeout" => options.op_timeout = parse_duration(&value()?)?,
                "--key-prefix" => options.key_prefix = Some(value()?),
                "--out" => out = Some(value()?),
                "--no-progress" => options.progress = false,
                other => return Err(format!("record: unknown option {other:?}")),
            }
        }
        if options.endpoints.iter().all(|e| e.is_empty()) {
            return Err("record: --endpoints is required".into());
        }
        if !workload_given {
            return Err("record: --workload is required".into());
        }
        Ok(())
    })();
    if let Err(e) = parsed {
        eprintln!("detcd-check: {e}\n\n{}", crate::HELP);
        return ExitCode::from(2);
    }
    eprintln!(
        "record: {} workload, {} clients for {} ms on {} (seed {})",
        options.workload,
        options.clients,
        options.duration.as_millis(),
        options.endpoints.join(","),
        options.seed
    );
    let recording = match record(&options) {
        Ok(r) => r,
        Err(e) => {
            println!("record: error: {e}");
            return ExitCode::from(1);
        }
    };
    let path = out.unwrap_or_else(|| default_history_name(options.workload));
    let written = std::fs::File::create(&path).and_then(|f| write_history(std::io::BufWriter::new(f), &recording.ops));
    if let Err(e) = written {
        println!("record: error: cannot write {path}: {e}");
        return ExitCode::from(1);
    }
    eprintln!(
        "record: {} ops in {} ms under {:?}, from etcd revision {} (revision 1 of the history); written to {path}",
        recording.ops.len(),
        recording.elapsed.as_millis(),
        recording.key_prefix,
        recording.start_revision
    );
    // Exactly what `detcd-check check FILE` does with its defaults.
    let check = crate::Args {
        model: ModelKind::Etcd,
        options: CheckOptions::default(),
        watch: Default::default(),
        report: None,
        files: vec![path.clone()],
    };
    if crate::check_file(&path, &check, &mut None) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The simulator drives [`detcd_checks::workload`] itself; a madsim build has no real network.
#[cfg(madsim)]
pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("detcd-check record: not available in a simulator (--cfg madsim) build");
    ExitCode::from(2)
}
