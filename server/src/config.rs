//! The member's configuration from etcd's flags and `ETCD_*` environment variables.
//!
//! A flag is `--name value` or `--name=value`; the environment variable is `ETCD_` and the flag
//! name in capitals with dashes as underscores (`--data-dir` ↔ `ETCD_DATA_DIR`). A flag given on
//! the command line wins over the environment, as in etcd. Unknown flags are refused.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use detcd_engine::limits;

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<String>,
    /// Extra plain-HTTP listeners for `/metrics` and `/health` (none by default).
    pub listen_metrics_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// name → peer URLs.
    pub initial_cluster: BTreeMap<String, Vec<String>>,
    pub initial_cluster_state_new: bool,
    pub initial_cluster_token: String,
    pub snapshot_count: u64,
    pub snapshot_catch_up_entries: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: usize,
    /// `--auth-token`: simple tokens or JWTs.
    pub auth_token: AuthToken,
    /// `--auth-token-ttl`, seconds (simple tokens only; a JWT's lifetime is its `ttl` option).
    pub auth_token_ttl_s: u64,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    pub log_level: String,
    /// Logs as JSON lines (`--log-format json`), else as text (`console`, the default).
    pub log_json: bool,
    pub client_tls: TlsFiles,
    /// The same for the peer URLs (`--peer-cert-file` …); also what the member dials peers with.
    pub peer_tls: TlsFiles,
}

/// TLS on the client listener (`crate::tls`): the files `--cert-file`, `--key-file`, `--trusted-ca-file` name, and `--client-cert-auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: String,
    pub key_file: String,
    pub trusted_ca_file: String,
    pub client_cert_auth: bool,
}

impl TlsFiles {
    /// Whether TLS is asked for at all (a certificate is given).
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    /// The checks etcd makes on its flags, before any file is read.
    pub fn check(&self) -> Result<(), String> {
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err("--cert-file and --key-file go together".into());
        }
        if self.client_cert_auth && self.trusted_ca_file.is_empty() {
            return Err("--client-cert-auth needs --trusted-ca-file".into());
        }
        if self.client_cert_auth && !self.enabled() {
            return Err("--client-cert-auth needs --cert-file and --key-file".into());
        }
        Ok(())
    }
}

/// What `--auth-token` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthToken {
    Simple,
    Jwt(JwtOptions),
}

/// `--auth-token jwt,pub-key=PATH,priv-key=PATH,sign-method=ALG[,ttl=DURATION]`, as etcd 3.4
/// parses it (`auth/options.go`). The files are read when the member starts (`crate::jwt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtOptions {
    /// PEM public key (RS*, PS*, ES*); empty for HS*.
    pub pub_key: String,
    /// PEM private key (RS*, PS*, ES*), or the HMAC secret's file (HS*); empty: verify only.
    pub priv_key: String,
    /// RS256/384/512, PS256/384/512, ES256/384/512 or HS256/384/512.
    pub sign_method: String,
    /// How long a token is valid after it is issued (etcd's default: 5 minutes).
    pub ttl_ms: u64,
}

pub const JWT_SIGN_METHODS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512"];

impl AuthToken {
    pub fn parse(text: &str) -> Result<AuthToken, String> {
        let mut parts = text.split(',');
        match parts.next().unwrap_or_default() {
            "simple" => {
                if text != "simple" {
                    return Err(format!("--auth-token: simple takes no options, got {text:?}"));
                }
                Ok(AuthToken::Simple)
            }
            "jwt" => {
                let mut o = JwtOptions {
                    pub_key: String::new(),
                    priv_key: String::new(),
                    sign_method: String::new(),
                    ttl_ms: 300_000,
                };
                for part in parts {
                    let (k, v) = part
                        .split_once('=')
                        .ok_or_else(|| format!("--auth-token jwt: expected option=value, got {part:?}"))?;
                    match k {
                        "pub-key" => o.pub_key = v.to_string(),
                        "priv-key" => o.priv_key = v.to_string(),
                        "sign-method" => o.sign_method = v.to_string(),
                        "ttl" => o.ttl_ms = go_duration_ms(v).map_err(|e| format!("--auth-token jwt: ttl={v}: {e}"))?,
                        other => {
                            return Err(format!(
                                "--auth-token jwt: unknown option {other:?} (pub-key, priv-key, sign-method, ttl)"
                            ))
                        }
                    }
                }
                if !JWT_SIGN_METHODS.contains(&o.sign_method.as_str()) {
                    return Err(format!(
                        "--auth-token jwt: sign-method={:?} is not one of {}",
                        o.sign_method,
                        JWT_SIGN_METHODS.join(", ")
                    ));
                }
                if o.ttl_ms < 1000 {
                    return Err("--auth-token jwt: ttl must be at least 1s (a JWT's exp is in seconds)".into());
                }
                if o.sign_method.starts_with("HS") {
                    if o.priv_key.is_empty() {
                        return Err("--auth-token jwt: HMAC sign methods need priv-key (the secret's file)".into());
                    }
                } else if o.pub_key.is_empty() {
                    return Err(format!("--auth-token jwt: sign-method={} needs pub-key", o.sign_method));
                }
                Ok(AuthToken::Jwt(o))
            }
            other => Err(format!("--auth-token: unknown token kind {other:?} (simple or jwt)")),
        }
    }
}

/// A Go duration (`5m`, `1m30s`, `1.5h`, `300ms`) in milliseconds, rounded down.
pub fn go_duration_ms(text: &str) -> Result<u64, String> {
    if text == "0" {
        return Ok(0);
    }
    let mut rest = text;
    let mut total_ms = 0f64;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or("a number needs a unit")?;
        let number: f64 = rest[..digits].parse().map_err(|_| format!("bad number in {text:?}"))?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale_ms = match &rest[..unit] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            other => return Err(format!("unknown unit {other:?} in {text:?}")),
        };
        total_ms += number * scale_ms;
        rest = &rest[unit..];
    }
    if total_ms > 1e15 {
        return Err(format!("{text:?} is too long"));
    }
    Ok(total_ms as u64)
}

/// (flag, what it sets, default), in `--help` order.
const FLAGS: &[(&str, &str, &str)] = &[
    ("name", "human-readable name of this member", "default"),
    ("data-dir", "path to the data directory", "${name}.detcd"),
    ("listen-client-urls", "URLs to listen on for client traffic", "http://127.0.0.1:2379"),
    ("listen-metrics-urls", "extra URLs serving only /metrics and /health over plain HTTP", ""),
    ("advertise-client-urls", "client URLs advertised to the cluster", "http://127.0.0.1:2379"),
    ("listen-peer-urls", "URLs to listen on for peer traffic", "http://127.0.0.1:2380"),
    ("initial-advertise-peer-urls", "this member's peer URLs advertised to the cluster", "http://127.0.0.1:2380"),
    ("initial-cluster", "initial cluster: name=peerURL,...", "${name}=http://127.0.0.1:2380"),
    ("initial-cluster-state", "new (bootstrap a cluster) or existing (join one)", "new"),
    ("initial-cluster-token", "token that tells clusters apart during bootstrap", "etcd-cluster"),
    ("snapshot-count", "applied entries between snapshots", "100000"),
    ("experimental-snapshot-catchup-entries", "log entries kept behind a snapshot for slow followers", "5000"),
    ("heartbeat-interval", "time of a heartbeat interval, in ms", "100"),
    ("election-timeout", "time of an election timeout, in ms", "1000"),
    ("quota-backend-bytes", "raise an alarm when the store exceeds this size", "2147483648"),
    ("max-request-bytes", "largest client request accepted, in bytes", "1572864"),
    (
        "auth-token",
        "simple, or jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256|PS256|ES256|HS256 (or 384/512)[,ttl=5m]",
        "simple",
    ),
    ("auth-token-ttl", "seconds a simple auth token lives past its last use", "300"),
    ("bcrypt-cost", "bcrypt cost of stored passwords (4..31)", "10"),
    ("log-level", "debug, info, warn or error", "info"),
    ("log-format", "console (text lines) or json (one JSON object per line)", "console"),
    ("cert-file", "client server TLS certificate (PEM); with it, client URLs are https://", ""),
    ("key-file", "client server TLS key (PEM)", ""),
    ("trusted-ca-file", "CA certificates (PEM) client certificates must be signed by", ""),
    ("client-cert-auth", "require client certificates signed by --trusted-ca-file", "false"),
    (
        "peer-cert-file",
        "peer TLS certificate (PEM), served and presented when dialing; peer URLs are then https://",
        "",
    ),
    ("peer-key-file", "peer TLS key (PEM)", ""),
    ("peer-trusted-ca-file", "CA certificates (PEM) peers' certificates must be signed by", ""),
    ("peer-client-cert-auth", "require dialing peers' certificates signed by --peer-trusted-ca-file", "false"),
];

/// Flags that may stand alone (`--client-cert-auth` means `--client-cert-auth=true`).
const BOOL_FLAGS: &[&str] = &["client-cert-auth", "peer-client-cert-auth"];

pub fn usage() -> String {
    let mut out = String::from("usage: detcd [flags]\n\nflags (each also as ETCD_<FLAG> in the environment):\n");
    for (flag, what, default) in FLAGS {
        out.push_str(&format!("  --{flag:<30} {what} (default \"{default}\")\n"));
    }
    out
}

impl ServerConfig {
    /// Parses flags (without the program name) and the environment given as pairs.
    pub fn parse(args: &[String], env: &[(String, String)]) -> Result<ServerConfig, String> {
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        for (flag, _, _) in FLAGS {
            let var = format!("ETCD_{}", flag.to_uppercase().replace('-', "_"));
            if let Some((_, v)) = env.iter().find(|(k, _)| *k == var) {
                values.insert(flag, v.clone());
            }
        }
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let (name, value) = match stripped.split_once('=') {
                Some((n, v)) => (n, v.to_string()),
                None if BOOL_FLAGS.contains(&stripped)
                    && args
                        .get(i + 1)
                        .is_none_or(|next| next.starts_with('-') || !matches!(next.as_str(), "true" | "false")) =>
                {
                    (stripped, "true".to_string())
                }
                None => {
                    i += 1;
                    let v = args.get(i).ok_or_else(|| format!("flag --{stripped} needs a value"))?;
                    (stripped, v.clone())
                }
            };
            let flag = FLAGS.iter().find(|(f, _, _)| *f == name).ok_or_else(|| format!("unknown flag --{name}"))?;
            values.insert(flag.0, value);
            i += 1;
        }
        let get = |flag: &str| -> String {
            values.get(flag).cloned().unwrap_or_else(|| {
                FLAGS.iter().find(|(f, _, _)| *f == flag).map(|(_, _, d)| d.to_string()).expect("known flag")
            })
        };
        let name = get("name");
        let urls = |flag: &str| -> Result<Vec<String>, String> {
            let list: Vec<String> =
                get(flag).split(',').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
            for u in &list {
                socket_addr(u).map_err(|e| format!("--{flag}: {e}"))?;
            }
            Ok(list)
        };
        let boolean = |flag: &str| -> Result<bool, String> {
            match get(flag).as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("--{flag}: {other:?} is neither true nor false")),
            }
        };
        let number = |flag: &str| -> Result<u64, String> {
            get(flag).parse::<u64>().map_err(|_| format!("--{flag}: not a number: {:?}", get(flag)))
        };
        let mut initial_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for part in get("initial-cluster").replace("${name}", &name).split(',').filter(|p| !p.is_empty()) {
            let (member, url) =
                part.split_once('=').ok_or_else(|| format!("--initial-cluster: expected name=URL, got {part:?}"))?;
            socket_addr(url).map_err(|e| format!("--initial-cluster: {e}"))?;
            initial_cluster.entry(member.to_string()).or_default().push(url.to_string());
        }
        let state = get("initial-cluster-state");
        let initial_cluster_state_new = match state.as_str() {
            "new" => true,
            "existing" => false,
            other => return Err(format!("--initial-cluster-state: expected new or existing, got {other:?}")),
        };
        let config = ServerConfig {
            data_dir: PathBuf::from(get("data-dir").replace("${name}", &name)),
            listen_client_urls: urls("listen-client-urls")?,
            listen_metrics_urls: urls("listen-metrics-urls")?,
            advertise_client_urls: urls("advertise-client-urls")?,
            listen_peer_urls: urls("listen-peer-urls")?,
            initial_advertise_peer_urls: urls("initial-advertise-peer-urls")?,
            initial_cluster,
            initial_cluster_state_new,
            initial_cluster_token: get("initial-cluster-token"),
            snapshot_count: number("snapshot-count")?,
            snapshot_catch_up_entries: number("experimental-snapshot-catchup-entries")?,
            heartbeat_interval_ms: number("heartbeat-interval")?,
            election_timeout_ms: number("election-timeout")?,
            quota_backend_bytes: number("quota-backend-bytes")?,
            max_request_bytes: number("max-request-bytes")? as usize,
            auth_token: AuthToken::parse(&get("auth-token"))?,
            auth_token_ttl_s: number("auth-token-ttl")?,
            bcrypt_cost: number("bcrypt-cost")? as u32,
            log_level: get("log-level"),
            client_tls: TlsFiles {
                cert_file: get("cert-file"),
                key_file: get("key-file"),
                trusted_ca_file: get("trusted-ca-file"),
                client_cert_auth: boolean("client-cert-auth")?,
            },
            peer_tls: TlsFiles {
                cert_file: get("peer-cert-file"),
                key_file: get("peer-key-file"),
                trusted_ca_file: get("peer-trusted-ca-file"),
                client_cert_auth: boolean("peer-client-cert-auth")?,
            },
            log_json: match get("log-format").as_str() {
                "json" => true,
                "console" | "text" => false,
                other => return Err(format!("--log-format: {other:?} is neither console nor json")),
            },
            name,
        };
        if config.heartbeat_interval_ms == 0 || config.election_timeout_ms < 5 * config.heartbeat_interval_ms {
            return Err("--election-timeout must be at least 5 times --heartbeat-interval".into());
        }
        if config.auth_token_ttl_s == 0 {
            return Err("--auth-token-ttl must be at least 1 second".into());
        }
        if !(4..=31).contains(&config.bcrypt_cost) {
            return Err("--bcrypt-cost must be between 4 and 31".into());
        }
        if config.max_request_bytes > limits::MAX_GRPC_RECEIVE_BYTES * 64 {
            return Err("--max-request-bytes is unreasonably large".into());
        }
        config.client_tls.check()?;
        config.peer_tls.check().map_err(|e| format!("peer TLS: {e}"))?;
        if config.peer_tls.enabled() && config.peer_tls.trusted_ca_file.is_empty() {
            return Err("--peer-cert-file needs --peer-trusted-ca-file (to check the peers dialed)".into());
        }
        let peer_urls = config.listen_peer_urls.iter().chain(&config.initial_advertise_peer_urls);
        if peer_urls.clone().any(|u| u.starts_with("https://") != config.peer_tls.enabled()) {
            return Err(
                "--listen-peer-urls / --initial-advertise-peer-urls: https:// exactly when --peer-cert-file is given"
                    .into(),
            );
        }
        let https = config.listen_client_urls.iter().filter(|u| u.starts_with("https://")).count();
        if config.client_tls.enabled() != (https > 0) || (https > 0 && https != config.listen_client_urls.len()) {
            return Err(
                "--listen-client-urls: https:// URLs need --cert-file and --key-file, and then every URL is https://"
                    .into(),
            );
        }
        if !config.initial_cluster.contains_key(&config.name) {
            return Err(format!("--initial-cluster has no member named {:?} (--name)", config.name));
        }
        Ok(config)
    }

    /// Member ids, as every member computes them alike: a hash of the member's peer URLs and
    /// the cluster token (etcd hashes the same inputs, with SHA-1).
    pub fn member_ids(&self) -> BTreeMap<String, u64> {
        self.initial_cluster
            .iter()
            .map(|(name, urls)| (name.clone(), member_id(urls, &self.initial_cluster_token)))
            .collect()
    }

    pub fn cluster_id(&self) -> u64 {
        let mut ids: Vec<u64> = self.member_ids().into_values().collect();
        ids.sort_unstable();
        fnv(ids.iter().flat_map(|id| id.to_be_bytes()).chain(self.initial_cluster_token.bytes())).max(1)
    }
}

pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    fnv(urls.join(",").bytes().chain(std::iter::once(b'|')).chain(token.bytes())).max(1)
}

fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The socket address of `http://host:port` (also https; `localhost` means 127.0.0.1).
pub fn socket_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("URL {url:?} must start with http:// or https://"))?;
    let host_port = rest.trim_end_matches('/');
    let host_port = host_port.replacen("localhost:", "127.0.0.1:", 1);
    host_port.parse::<SocketAddr>().map_err(|_| format!("URL {url:?} is not http://IP:port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults_make_a_single_member_on_loopback() {
        let c = ServerConfig::parse(&[], &[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.detcd"));
        assert_eq!(c.listen_client_urls, vec!["http://127.0.0.1:2379".to_string()]);
        assert_eq!(c.initial_cluster.len(), 1);
        assert!(c.initial_cluster_state_new);
    }

    #[test]
    fn flags_win_over_the_environment() {
        let env = vec![("ETCD_NAME".to_string(), "from-env".to_string()), ("ETCD_SNAPSHOT_COUNT".into(), "7".into())];
        let c = ServerConfig::parse(
            &args("--name=n1 --initial-cluster n1=http://127.0.0.1:2380,n2=http://127.0.0.1:2480"),
            &env,
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.snapshot_count), ("n1", 7));
        assert_eq!(c.member_ids().len(), 2);
        assert_ne!(c.member_ids()["n1"], c.member_ids()["n2"]);
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        for bad in [
            "--nope 1",
            "--snapshot-count x",
            "--initial-cluster-state maybe",
            "--listen-client-urls 127.0.0.1:2379",
            "--name other --initial-cluster m1=http://127.0.0.1:2380",
            "--heartbeat-interval 100 --election-timeout 200",
            "--auth-token nope",
            "--auth-token simple,ttl=5m",
            "--auth-token jwt",
            "--auth-token jwt,pub-key=a,priv-key=b",
            "--auth-token jwt,pub-key=a,priv-key=b,sign-method=XX256",
            "--auth-token jwt,pub-key=a,priv-key=b,sign-method=RS256,ttl=5",
            "--auth-token jwt,pub-key=a,priv-key=b,sign-method=RS256,ttl=5x",
            "--auth-token jwt,pub-key=a,priv-key=b,sign-method=RS256,ttl=500ms",
            "--auth-token jwt,pub-key=a,priv-key=b,sign-method=RS256,colour=red",
            "--auth-token jwt,pub-key=a,priv-key=b,sign-method=RS256,oops",
            "--auth-token jwt,priv-key=b,sign-method=ES256",
            "--auth-token jwt,pub-key=a,sign-method=HS256",
        ] {
            assert!(ServerConfig::parse(&args(bad), &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwt_options_parse_as_etcd_does() {
        let c =
            ServerConfig::parse(&args("--auth-token jwt,pub-key=/k.pub,priv-key=/k,sign-method=RS256"), &[]).unwrap();
        let want = JwtOptions {
            pub_key: "/k.pub".into(),
            priv_key: "/k".into(),
            sign_method: "RS256".into(),
            ttl_ms: 300_000,
        };
        assert_eq!(c.auth_token, AuthToken::Jwt(want.clone()));
        let c = ServerConfig::parse(&args("--auth-token=jwt,sign-method=ES384,pub-key=/k.pub,ttl=1m30s"), &[]).unwrap();
        assert_eq!(
            c.auth_token,
            AuthToken::Jwt(JwtOptions { sign_method: "ES384".into(), priv_key: "".into(), ttl_ms: 90_000, ..want })
        );
        let c =
            ServerConfig::parse(&[], &[("ETCD_AUTH_TOKEN".into(), "jwt,priv-key=/s,sign-method=HS512,ttl=2s".into())])
                .unwrap();
        assert!(matches!(c.auth_token, AuthToken::Jwt(JwtOptions { ttl_ms: 2000, .. })));
        assert_eq!(ServerConfig::parse(&[], &[]).unwrap().auth_token, AuthToken::Simple);
        assert_eq!(go_duration_ms("1.5h"), Ok(5_400_000));
        assert_eq!(go_duration_ms("10m"), Ok(600_000));
        assert_eq!(go_duration_ms("1s500ms"), Ok(1_500));
        assert!(go_duration_ms("").is_err() && go_duration_ms("m").is_err() && go_duration_ms("3").is_err());
    }
}
