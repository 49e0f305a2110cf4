//! # detcd-tests
//!
//! End-to-end tests against real `detcd` processes with real etcd clients: Debian's `etcdctl`
//! 3.4 (package `etcd-client`; `tests/run-all.sh` installs it when missing). The binary under
//! test is `target/debug/detcd` (or `$DETCD_BIN`); `tests/run-all.sh` builds it first.
//!
//! Every process a test starts is killed when its [`Member`] is dropped, so a failing test
//! leaves nothing running; data directories live under the system temp dir and are removed.

pub mod bench;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The detcd binary under test.
pub fn detcd_bin() -> PathBuf {
    built_bin("detcd", "DETCD_BIN", "detcd-server")
}

/// A binary of the workspace the tests run: `$env_var` if set, else `name` in the debug target
/// dir, which must have been built (`cargo build -p package`; tests/run-all.sh does).
pub fn built_bin(name: &str, env_var: &str, package: &str) -> PathBuf {
    if let Ok(bin) = std::env::var(env_var) {
        return PathBuf::from(bin);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug").join(name);
    assert!(bin.exists(), "{} not built: run `cargo build -p {package}` (tests/run-all.sh does)", bin.display());
    bin
}

/// A free loopback port (bound, then released; the race with other processes is accepted).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Runs the openssl command in `dir` (keys and certificates for the TLS and JWT tests;
/// tests/run-all.sh installs it when missing).
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh directory under the temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("detcd-e2e-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One running detcd process.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
}

impl Member {
    pub fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }

    /// The process id while it runs (to read its memory from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child =
            Command::new(detcd_bin()).args(&self.args).stdout(Stdio::null()).stderr(log).spawn().expect("start detcd");
        self.child = Some(child);
    }

    /// SIGKILL: no clean shutdown, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and the exit status (a clean shutdown exits 0).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process was started and has exited by itself (reaped then).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            _ => false,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of detcd processes on loopback.
pub struct Cluster {
    pub members: Vec<Member>,
    _dir: TempDir,
}

impl Cluster {
    pub fn start(n: usize, tag: &str) -> Cluster {
        Cluster::start_with(n, tag, &[])
    }

    /// With extra flags for every member.
    pub fn start_with(n: usize, tag: &str, extra: &[&str]) -> Cluster {
        let dir = TempDir::new(tag);
        let names: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
        let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
        let initial_cluster = names
            .iter()
            .zip(&ports)
            .map(|(name, (_, peer))| format!("{name}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (name, (client, peer)) in names.iter().zip(&ports) {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let mut args = member_args(name, &dir.0.join(format!("{name}.detcd")), &client_url, &peer_url);
            args.extend([format!("--initial-cluster={initial_cluster}"), "--initial-cluster-state=new".into()]);
            args.extend(extra.iter().map(|a| a.to_string()));
            let data_dir = dir.0.join(format!("{name}.detcd"));
            let log = dir.0.join(format!("{name}.log"));
            members.push(Member { name: name.clone(), client_url, peer_url, data_dir, args, child: None, log });
        }
        for m in &mut members {
            m.start();
        }
        let cluster = Cluster { members, _dir: dir };
        cluster.wait_ready();
        cluster
    }

    /// A member that joins this cluster once started (`--initial-cluster-state existing`),
    /// after `etcdctl member add`: `initial_cluster` as `member add` printed it
    /// (ETCD_INITIAL_CLUSTER). `client_url` and `peer_url` as given to `member add`; `data_tag`
    /// names its (fresh) data dir and log.
    pub fn joiner(
        &self,
        name: &str,
        client_url: &str,
        peer_url: &str,
        data_tag: &str,
        initial_cluster: &str,
    ) -> Member {
        let data_dir = self._dir.0.join(format!("{data_tag}.detcd"));
        let mut args = member_args(name, &data_dir, client_url, peer_url);
        args.extend([format!("--initial-cluster={initial_cluster}"), "--initial-cluster-state=existing".into()]);
        let log = self._dir.0.join(format!("{data_tag}.log"));
        let (client_url, peer_url) = (client_url.to_string(), peer_url.to_string());
        Member { name: name.to_string(), client_url, peer_url, data_dir, args, child: None, log }
    }

    pub fn endpoints(&self) -> String {
        self.members.iter().filter(|m| m.child.is_some()).map(|m| m.endpoint()).collect::<Vec<_>>().join(",")
    }

    /// Until a write through the first running member succeeds (so a leader exists).
    pub fn wait_ready(&self) {
        let first = self.members.iter().find(|m| m.child.is_some()).expect("a running member");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = etcdctl(&first.endpoint(), &["put", "__ready", "1"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> =
                    self.members.iter().map(|m| format!("--- {} ---\n{}", m.name, m.log())).collect();
                panic!("cluster not ready: {}\n{}", String::from_utf8_lossy(&out.stderr), logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Dumps every member's log (for a failing assertion's message).
    pub fn logs(&self) -> String {
        self.members.iter().map(|m| format!("--- {} ---\n{}", m.name, m.log())).collect::<Vec<_>>().join("\n")
    }
}

/// The flags every member of a test cluster gets, but the initial cluster's.
fn member_args(name: &str, data_dir: &Path, client_url: &str, peer_url: &str) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--data-dir={}", data_dir.display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        "--log-level=info".into(),
    ]
}

/// Debian's etcd 3.4 (`/usr/bin/etcd`, package `etcd-server`, or `$ETCD_BIN`), one member on free
/// loopback ports; killed on drop.
pub struct Etcd {
    child: Child,
    pub client_url: String,
    _dir: TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        let bin = std::env::var("ETCD_BIN").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/bin/etcd"));
        let found = Command::new(&bin).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(
            found,
            "etcd not found at {}: `apt-get install -y etcd-server` (Debian's etcd 3.4; tests/run-all.sh installs \
             it), or set ETCD_BIN",
            bin.display()
        );
        let dir = TempDir::new("etcd");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.0.join("etcd.log")).expect("log file");
        let child = Command::new(bin)
            .arg("--name=e1")
            .arg(format!("--data-dir={}", dir.0.join("e1.etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=e1={peer_url}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let etcd = Etcd { child, client_url, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcdctl(&etcd.endpoint(), &["put", "__ready", "1"]).status.success() {
            let log = std::fs::read_to_string(etcd._dir.0.join("etcd.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "etcd not ready:\n{log}");
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }

    pub fn endpoint(&self) -> String {
        self.client_url.trim_start_matches("http://").to_string()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An etcdctl (API v3) command against `endpoints`, arguments still to add.
pub fn etcdctl_command(endpoints: &str) -> Command {
    let mut command = Command::new(etcdctl_bin());
    command.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoints}"));
    command
}

/// Runs etcdctl (API v3) against `endpoints` with a 5 s command timeout.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> Output {
    etcdctl_command(endpoints).arg("--command-timeout=5s").args(args).output().expect("run etcdctl")
}

/// etcdctl with standard input (txn reads its ops from it).
pub fn etcdctl_stdin(endpoints: &str, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = etcdctl_command(endpoints)
        .arg("--command-timeout=5s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("etcdctl output")
}

pub fn etcdctl_bin() -> PathBuf {
    let bin = std::env::var("ETCDCTL_BIN").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("etcdctl"));
    let found = Command::new(&bin).arg("version").env("ETCDCTL_API", "3").output().is_ok_and(|o| o.status.success());
    assert!(found, "etcdctl not found: `apt-get install -y etcd-client` (tests/run-all.sh installs it)");
    bin
}

/// stdout as a string, asserting success (with stderr in the message otherwise).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "etcdctl failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as a string, asserting failure.
pub fn fails(out: Output) -> String {
    assert!(!out.status.success(), "etcdctl should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}
