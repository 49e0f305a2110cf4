//! Command-line parsing of `detcd-bench`: etcd `benchmark`'s flags where they apply.
//!
//! Flags may stand anywhere (as cobra's persistent flags do in etcd's tool), as `--flag value` or
//! `--flag=value`; the first word that is not a flag names the command, the others are its
//! arguments. Hand-parsed: the flag set is small and the workspace carries no CLI crate.

use std::collections::BTreeMap;
use std::time::Duration;

pub const USAGE: &str = "\
usage: detcd-bench [global flags] <command> [command flags] [args]

global flags:
  --endpoints a:2379,b:2379   gRPC endpoints (default 127.0.0.1:2379)
  --conns N                   gRPC connections, spread round-robin over the endpoints (default 1)
  --clients N                 concurrent clients, spread round-robin over the connections (default 1)
  --total N                   requests in all (default 10000)
  --duration D                run for D (10s, 500ms, 2m) instead of --total (unless --total is given too)
  --dial-timeout D            connection timeout (default 5s)
  --request-timeout D         a request unanswered this long counts as an error (default 30s)
  --seed N                    seed of the random keys (default 1: every run puts the same keys)
  --output text|json          report format (default text)
  --progress auto|always|never  progress line on stderr (default auto: when stderr is a terminal)
  --rss-pids PID,PID          servers whose VmRSS (from /proc) the watch report gives, summed

commands:
  put              --key-size 8 --val-size 8 --key-space-size 1 --sequential-keys --rate 0
  range KEY [END]  --consistency l|s --limit 0 --count-only --rate 0
  txn-put          --txn-ops 1 --key-size 8 --val-size 8 --key-space-size 1 --rate 0
                   (--rate N: at most N requests/s in all; 0 is unbounded)
  watch            --streams 10 --watch-per-stream 100 --watched-key-total 1 --put-total 1000
                   --put-rate 0 --key-size 32 --val-size 8 --event-timeout 60s
                   (the puts are made by --clients clients)
  watch-latency    --put-total 1000 --put-rate 100 --streams 10 --watchers-per-stream 10 --prevkv
                   --val-size 32 --event-timeout 60s
  lease-keepalive  (--total keepalives over --clients leases)
";

/// Flags that take no value.
const SWITCHES: &[&str] = &["sequential-keys", "count-only", "prevkv", "help"];

/// The parsed command line: its command, positional arguments and flags (by name, without `--`).
#[derive(Debug, Default)]
pub struct Args {
    pub command: String,
    pub positional: Vec<String>,
    flags: BTreeMap<String, String>,
}

/// Flags every command takes.
const GLOBAL_FLAGS: &[&str] = &[
    "endpoints",
    "conns",
    "clients",
    "total",
    "duration",
    "rate",
    "dial-timeout",
    "request-timeout",
    "seed",
    "output",
    "progress",
    "rss-pids",
    "help",
];

/// Each command and the flags of its own.
const COMMAND_FLAGS: &[(&str, &[&str])] = &[
    ("put", &["key-size", "val-size", "key-space-size", "sequential-keys", "rate"]),
    ("range", &["consistency", "limit", "count-only", "rate"]),
    ("txn-put", &["txn-ops", "key-size", "val-size", "key-space-size", "rate"]),
    (
        "watch",
        &[
            "streams",
            "watch-per-stream",
            "watched-key-total",
            "put-total",
            "put-rate",
            "key-size",
            "val-size",
            "event-timeout",
        ],
    ),
    (
        "watch-latency",
        &["streams", "watchers-per-stream", "put-total", "put-rate", "prevkv", "val-size", "event-timeout"],
    ),
    ("lease-keepalive", &[]),
];

impl Args {
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
        let mut args = Args::default();
        let mut words = argv.into_iter();
        while let Some(word) = words.next() {
            if let Some(flag) = word.strip_prefix("--") {
                let (name, value) = match flag.split_once('=') {
                    Some((name, value)) => (name.to_string(), value.to_string()),
                    None if SWITCHES.contains(&flag) => (flag.to_string(), "true".to_string()),
                    None => {
                        let value = words.next().ok_or_else(|| format!("flag --{flag} needs a value"))?;
                        (flag.to_string(), value)
                    }
                };
                if name.is_empty() {
                    return Err("an empty flag name (`--`)".into());
                }
                args.flags.insert(name, value);
            } else if args.command.is_empty() {
                args.command = word;
            } else {
                args.positional.push(word);
            }
        }
        Ok(args)
    }

    /// Refuses an unknown command and flags the command does not take (misspellings, or another
    /// command's flags), before anything runs.
    pub fn check_known(&self) -> Result<(), String> {
        let Some((_, own)) = COMMAND_FLAGS.iter().find(|(c, _)| *c == self.command) else {
            return Err(if self.command.is_empty() {
                "no command given".to_string()
            } else {
                format!("unknown command {:?}", self.command)
            });
        };
        let unknown: Vec<String> = self
            .flags
            .keys()
            .filter(|f| !GLOBAL_FLAGS.contains(&f.as_str()) && !own.contains(&f.as_str()))
            .map(|f| format!("--{f}"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("{} does not take {}", self.command, unknown.join(", ")))
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.flags.get(name).cloned().unwrap_or_else(|| default.to_string())
    }

    pub fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.flags.get(name) {
            None => Ok(default),
            Some(v) => v.replace('_', "").parse().map_err(|_| format!("--{name}: not a whole number: {v:?}")),
        }
    }

    /// A number that must be at least 1.
    pub fn positive(&self, name: &str, default: u64) -> Result<u64, String> {
        let n = self.number(name, default)?;
        if n == 0 {
            return Err(format!("--{name} must be at least 1"));
        }
        Ok(n)
    }

    pub fn switch(&self, name: &str) -> Result<bool, String> {
        match self.string(name, "false").as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(format!("--{name}: expected true or false, got {other:?}")),
        }
    }

    pub fn duration(&self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.flags.get(name) {
            None => Ok(default),
            Some(v) => parse_duration(v).ok_or_else(|| format!("--{name}: not a duration (10s, 500ms, 2m): {v:?}")),
        }
    }
}

/// `10s`, `500ms`, `2m`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let (number, unit_s) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value * unit_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Args {
        Args::parse(line.split_whitespace().map(String::from)).unwrap()
    }

    #[test]
    fn flags_anywhere_in_both_spellings() {
        let args = parse("--clients=8 range --consistency s foo fop --conns 2 --count-only");
        assert_eq!(args.command, "range");
        assert_eq!(args.positional, vec!["foo", "fop"]);
        assert_eq!(args.number("clients", 1).unwrap(), 8);
        assert_eq!(args.number("conns", 1).unwrap(), 2);
        assert_eq!(args.string("consistency", "l"), "s");
        assert!(args.switch("count-only").unwrap());
        assert!(args.check_known().is_ok());
    }

    #[test]
    fn bad_values_are_named() {
        let args = parse("put --total ten --clients 0 --duration 3x --colour red");
        assert_eq!(args.number("total", 1).unwrap_err(), "--total: not a whole number: \"ten\"");
        assert_eq!(args.positive("clients", 1).unwrap_err(), "--clients must be at least 1");
        assert!(args.duration("duration", Duration::ZERO).is_err());
        assert_eq!(args.check_known().unwrap_err(), "put does not take --colour");
        assert!(parse("watch --consistency s").check_known().is_err(), "range's flag, not watch's");
        assert_eq!(parse("get foo").check_known().unwrap_err(), "unknown command \"get\"");
        assert!(Args::parse(["put".to_string(), "--total".to_string()]).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
