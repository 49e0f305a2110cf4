//! TLS on the client URL, end to end with Debian's etcdctl 3.4: `--cert-file`, `--key-file`,
//! `--trusted-ca-file` and `--client-cert-auth`, certificates made by the openssl command
//! (tests/run-all.sh installs it when missing).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use detcd_tests::{detcd_bin, etcdctl_command, free_port, openssl, TempDir};

/// A CA (`{ca}.pem`, `{ca}-key.pem`) and, signed by it, `{name}.pem` / `{name}-key.pem` for
/// 127.0.0.1 with the extended key usage `usage` (serverAuth, clientAuth).
fn ca(dir: &Path, ca: &str) {
    let key = format!("{ca}-key.pem");
    let cert = format!("{ca}.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
}

fn signed(dir: &Path, ca: &str, name: &str, usage: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), format!("subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")).unwrap();
    let (key, csr, cert) = (format!("{name}-key.pem"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

struct Running(Child);

impl Running {
    /// A detcd named `name` in `dir` (data in `dir/name`, log in `dir/name.log`) with its URLs
    /// (`client_url` also advertised, `peer_url` also the initial one) and `extra` flags.
    fn start(dir: &Path, name: &str, client_url: &str, peer_url: &str, extra: &[String]) -> Running {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", dir.join(name).display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
        ];
        args.extend_from_slice(extra);
        Running(Command::new(detcd_bin()).args(args).stdout(Stdio::null()).stderr(log).spawn().expect("start detcd"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcdctl_tls(endpoint: &str, dir: &Path, client: Option<&str>, args: &[&str]) -> Output {
    let mut command = etcdctl_command(endpoint);
    command.arg("--command-timeout=5s").arg(format!("--cacert={}", dir.join("ca.pem").display()));
    if let Some(client) = client {
        command.arg(format!("--cert={}", dir.join(format!("{client}.pem")).display()));
        command.arg(format!("--key={}", dir.join(format!("{client}-key.pem")).display()));
    }
    command.args(args).output().expect("run etcdctl")
}

#[test]
fn etcdctl_talks_tls_and_a_client_certificate_from_the_trusted_ca_is_required() {
    let dir = TempDir::new("tls");
    let d = dir.0.as_path();
    ca(d, "ca");
    signed(d, "ca", "server", "serverAuth");
    signed(d, "ca", "client", "clientAuth");
    ca(d, "rogue-ca");
    signed(d, "rogue-ca", "rogue", "clientAuth");
    let (client_port, peer_port) = (free_port(), free_port());
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let path = |f: &str| d.join(f).display().to_string();
    let _member = Running::start(
        d,
        "tls",
        &client_url,
        &peer_url,
        &[
            format!("--initial-cluster=tls={peer_url}"),
            format!("--cert-file={}", path("server.pem")),
            format!("--key-file={}", path("server-key.pem")),
            format!("--trusted-ca-file={}", path("ca.pem")),
            "--client-cert-auth".to_string(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = etcdctl_tls(&client_url, d, Some("client"), &["put", "secure", "yes"]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
            break;
        }
        let log = std::fs::read_to_string(d.join("tls.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "no TLS put: {}\n{log}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    let get = etcdctl_tls(&client_url, d, Some("client"), &["get", "secure", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "yes\n", "{}", String::from_utf8_lossy(&get.stderr));
    // The JSON gateway over TLS, with the client certificate: curl, in HTTP/1.1 (ALPN h2 is
    // gRPC's alone on detcd; README).
    let range = Command::new("curl")
        .args(["-s", "-S", "--http1.1", "--max-time", "10", "--cacert", &path("ca.pem"), "--cert", &path("client.pem")])
        .args(["--key", &path("client-key.pem"), "--data-binary", r#"{"key": "c2VjdXJl"}"#])
        .arg(format!("{client_url}/v3/kv/range"))
        .output()
        .expect("run curl");
    let body = String::from_utf8_lossy(&range.stdout);
    assert!(body.contains(r#""value":"eWVz""#), "{body}{}", String::from_utf8_lossy(&range.stderr));
    // Without a client certificate, or with one from another CA: refused at the handshake.
    for client in [None, Some("rogue")] {
        // (Short timeouts: a refused handshake is retried until they run out.)
        let refused =
            etcdctl_tls(&client_url, d, client, &["--dial-timeout=1s", "--command-timeout=2s", "get", "secure"]);
        assert!(!refused.status.success(), "{client:?} was let in: {}", String::from_utf8_lossy(&refused.stdout));
    }
    // Plain text on the TLS port gets nowhere either.
    let plain = etcdctl_command(&format!("http://127.0.0.1:{client_port}"))
        .args(["--dial-timeout=1s", "--command-timeout=2s", "get", "secure"])
        .output()
        .expect("run etcdctl");
    assert!(!plain.status.success());
}

#[test]
fn three_members_talk_to_each_other_over_tls_only() {
    let dir = TempDir::new("peer-tls");
    let d = dir.0.as_path();
    ca(d, "ca");
    signed(d, "ca", "peer", "serverAuth,clientAuth");
    let names = ["p1", "p2", "p3"];
    let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
    let initial = names
        .iter()
        .zip(&ports)
        .map(|(n, (_, peer))| format!("{n}=https://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (name, (client, peer)) in names.iter().zip(&ports) {
        let path = |f: &str| d.join(f).display().to_string();
        members.push(Running::start(
            d,
            name,
            &format!("http://127.0.0.1:{client}"),
            &format!("https://127.0.0.1:{peer}"),
            &[
                format!("--initial-cluster={initial}"),
                format!("--peer-cert-file={}", path("peer.pem")),
                format!("--peer-key-file={}", path("peer-key.pem")),
                format!("--peer-trusted-ca-file={}", path("ca.pem")),
                "--peer-client-cert-auth".to_string(),
            ],
        ));
    }
    let endpoint = |i: usize| format!("http://127.0.0.1:{}", ports[i].0);
    let logs = || {
        names
            .iter()
            .map(|n| std::fs::read_to_string(d.join(format!("{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = etcdctl_command(&endpoint(0)).args(["--command-timeout=3s", "put", "over", "tls"]).output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "no put: {}\n{}", String::from_utf8_lossy(&out.stderr), logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Replicated over TLS: a linearizable read on another member sees it.
    let get = etcdctl_command(&endpoint(2))
        .args(["--command-timeout=5s", "get", "over", "--print-value-only"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&get.stdout), "tls\n", "{}\n{}", String::from_utf8_lossy(&get.stderr), logs());
    let list = etcdctl_command(&endpoint(1)).args(["--command-timeout=5s", "member", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert_eq!(list.matches("https://127.0.0.1:").count(), 3, "{list}");
    drop(members);
}
