//! Locks and elections, end to end against real detcd processes.
//!
//! etcdctl 3.4's `lock` and `elect` run clientv3's `concurrency` package on the client (KV,
//! Watch and Lease calls); the Rust `etcd-client` crate calls the `v3lock` and `v3election`
//! gRPC services, which detcd serves on its client port. Both are exercised here. Exclusion
//! and hand-over are proven by the order of what the holders write and by revisions, never by
//! how long something took; sleeps only give a broken implementation room to misbehave.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::grpc_error;
use detcd_tests::{etcdctl, etcdctl_command, ok, Cluster, TempDir};
use etcd_client::{
    Client, GetOptions, LeaderKey, LeaseTimeToLiveOptions, LockOptions, ObserveStream, ProclaimOptions, ResignOptions,
};

/// How long any single answer may take before the test calls it lost.
const ANSWER: Duration = Duration::from_secs(10);

/// An etcdctl process that runs in the background (lock holders, candidates, observers);
/// killed when dropped so that a failing test leaves nothing running.
struct Background(Child);

impl Background {
    fn start(endpoints: &str, args: &[&str]) -> Background {
        let child = etcdctl_command(endpoints)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start etcdctl");
        Background(child)
    }

    /// Its stdout, line by line, through a channel (read by a thread of its own).
    fn lines(&mut self) -> mpsc::Receiver<String> {
        let stdout = self.0.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.0.id().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the exit, within [`ANSWER`]; the exit status and stderr.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + ANSWER;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                let mut stderr = String::new();
                if let Some(mut e) = self.0.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                return (status, stderr);
            }
            assert!(Instant::now() < deadline, "etcdctl did not exit within {ANSWER:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The next line, within [`ANSWER`].
fn next_line(lines: &mpsc::Receiver<String>, what: &str) -> String {
    lines.recv_timeout(ANSWER).unwrap_or_else(|e| panic!("no {what} within {ANSWER:?}: {e}"))
}

/// The keys under `prefix`, in key order.
fn keys_under(endpoints: &str, prefix: &str) -> Vec<String> {
    ok(etcdctl(endpoints, &["get", "--prefix", "--keys-only", prefix]))
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Until `prefix` holds `n` keys (a waiter has queued), within [`ANSWER`].
fn wait_for_keys(endpoints: &str, prefix: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + ANSWER;
    loop {
        let keys = keys_under(endpoints, prefix);
        if keys.len() == n {
            return keys;
        }
        assert!(Instant::now() < deadline, "{prefix} never held {n} keys: {keys:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn etcdctl_lock_runs_contending_commands_one_after_the_other() {
    let c = Cluster::start(1, "lock-excl");
    let ep = c.members[0].endpoint();
    let dir = TempDir::new("lock-excl-out");
    let journal = dir.0.join("journal");
    // Each holder writes its start, lingers, writes its end: without exclusion the two
    // commands' lines interleave.
    let holder = |id: &str| {
        let script = format!("echo start-{id} >> {j}; sleep 1; echo end-{id} >> {j}", j = journal.display());
        Background::start(&ep, &["lock", "job", "--", "sh", "-c", &script])
    };
    let first = holder("a");
    let second = holder("b");
    let (a, a_err) = first.wait();
    let (b, b_err) = second.wait();
    assert!(a.success() && b.success(), "a lock command failed: {a_err}{b_err}\n{}", c.logs());
    let lines: Vec<String> = std::fs::read_to_string(&journal).expect("journal").lines().map(str::to_owned).collect();
    let one_after_other = |x: &str, y: &str| {
        lines == [format!("start-{x}"), format!("end-{x}"), format!("start-{y}"), format!("end-{y}")]
    };
    assert!(one_after_other("a", "b") || one_after_other("b", "a"), "the holders overlapped: {lines:?}");
    // Both released: no key is left under the lock.
    assert_eq!(keys_under(&ep, "job/"), Vec::<String>::new());
}

#[test]
fn etcdctl_lock_passes_on_when_the_killed_holders_lease_expires() {
    const TTL_S: u64 = 3;
    let c = Cluster::start(1, "lock-ttl");
    let ep = c.members[0].endpoint();
    let dir = TempDir::new("lock-ttl-out");
    let ran = dir.0.join("ran");
    // Without a command, `etcdctl lock` prints the lock's key and holds it until killed.
    let mut holder = Background::start(&ep, &["lock", "--ttl", &TTL_S.to_string(), "res"]);
    let held = next_line(&holder.lines(), "lock key from the holder");
    assert!(held.starts_with("res/"), "holder printed {held:?}");
    let script = format!("echo ran > {}", ran.display());
    let waiter = Background::start(&ep, &["lock", "res", "--", "sh", "-c", &script]);
    // The waiter has queued behind the holder, and has not run.
    let queued = wait_for_keys(&ep, "res/", 2);
    assert!(queued.contains(&held), "{queued:?}");
    assert!(!ran.exists(), "the waiter ran while the holder held the lock");
    // No clean exit: the holder's session lease is neither revoked nor kept alive any more.
    holder.signal("KILL");
    let killed_at = Instant::now();
    let (status, stderr) = waiter.wait();
    assert!(status.success(), "waiter failed: {stderr}\n{}", c.logs());
    assert!(ran.exists(), "the waiter's command did not run");
    // The lease was last renewed at most a third of its TTL before the kill (etcdctl renews at
    // TTL/3), so it cannot have expired sooner than two thirds of the TTL after it.
    let waited = killed_at.elapsed();
    assert!(waited >= Duration::from_secs(TTL_S) * 2 / 3, "the lock passed on after {waited:?}, before the TTL");
    assert_eq!(keys_under(&ep, "res/"), Vec::<String>::new());
}

#[test]
fn etcdctl_elect_hands_leadership_to_the_next_candidate() {
    let c = Cluster::start(1, "elect");
    let ep = c.members[0].endpoint();
    let mut observer = Background::start(&ep, &["elect", "-l", "office"]);
    let observed = observer.lines();
    let mut first = Background::start(&ep, &["elect", "office", "alice"]);
    let first_says = first.lines();
    let first_key = next_line(&first_says, "first candidate's key");
    assert_eq!(next_line(&first_says, "first candidate's proposal"), "alice");
    assert_eq!(next_line(&observed, "observed leader key"), first_key);
    assert_eq!(next_line(&observed, "observed proposal"), "alice");

    let mut second = Background::start(&ep, &["elect", "office", "bob"]);
    let second_says = second.lines();
    let mut third = Background::start(&ep, &["elect", "office", "carol"]);
    let third_says = third.lines();
    wait_for_keys(&ep, "office/", 3);
    assert!(second_says.try_recv().is_err() && third_says.try_recv().is_err(), "a follower claims to lead");

    // SIGKILL: no resignation. Revoking its session's lease (the key ends in the lease id, in
    // hex) stands for the expiry of the 60 s session etcdctl's elect cannot shorten.
    first.signal("KILL");
    let lease_hex = first_key.rsplit('/').next().expect("a lease id in the key");
    ok(etcdctl(&ep, &["lease", "revoke", lease_hex]));
    let second_key = next_line(&second_says, "second candidate's key");
    assert_eq!(next_line(&second_says, "second candidate's proposal"), "bob");
    assert_eq!(next_line(&observed, "observed leader key"), second_key);
    assert_eq!(next_line(&observed, "observed proposal"), "bob");
    assert!(third_says.try_recv().is_err(), "the third candidate leads alongside the second");

    // SIGINT: etcdctl resigns before it exits.
    second.signal("INT");
    let third_key = next_line(&third_says, "third candidate's key");
    assert_eq!(next_line(&third_says, "third candidate's proposal"), "carol");
    assert_eq!(next_line(&observed, "observed leader key"), third_key);
    assert_eq!(next_line(&observed, "observed proposal"), "carol");
    let (status, stderr) = second.wait();
    assert!(status.success(), "the resigning candidate failed: {stderr}");
    assert_ne!(first_key, second_key);
    assert_ne!(second_key, third_key);
}

// ---- the v3lock and v3election services, through the etcd-client crate ----

async fn connect(endpoint: &str) -> Client {
    common::connect(endpoint, ANSWER, Duration::from_secs(60)).await
}

/// etcd's services answer their errors with code `Unknown` (see server/src/grpc/concurrency.rs).
fn unknown(message: &str) -> (String, String) {
    ("Unknown".to_string(), message.to_string())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn keys_with_prefix(client: &mut Client, prefix: &str) -> Vec<String> {
    let found = client.get(prefix, Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    found.kvs().iter().map(|kv| text(kv.key())).collect()
}

async fn until_keys(client: &mut Client, prefix: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + ANSWER;
    loop {
        let keys = keys_with_prefix(client, prefix).await;
        if keys.len() == n {
            return keys;
        }
        assert!(Instant::now() < deadline, "{prefix} never held {n} keys: {keys:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a spawned call is still waiting, after giving it a moment to (wrongly) finish.
async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>) -> bool {
    tokio::time::sleep(Duration::from_millis(300)).await;
    !task.is_finished()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_service_queues_waiters_by_revision_and_cleans_up_after_them() {
    let c = Cluster::start(1, "rs-lock");
    let mut client = connect(&c.members[0].endpoint()).await;

    let missing = client.lock("job", Some(LockOptions::new().with_lease(0x1234))).await;
    assert_eq!(grpc_error(missing), unknown("etcdserver: requested lease not found"));

    let a = client.lease_grant(60, None).await.expect("grant").id();
    let b = client.lease_grant(60, None).await.expect("grant").id();
    let held = client.lock("job", Some(LockOptions::new().with_lease(a))).await.expect("uncontended lock");
    assert_eq!(text(held.key()), format!("job/{a:x}"));
    // Locking again with the same lease keeps its place: answered at once, same key.
    let again = client.lock("job", Some(LockOptions::new().with_lease(a))).await.expect("re-lock");
    assert_eq!(again.key(), held.key());

    let mut other = client.clone();
    let waiter = tokio::spawn(async move { other.lock("job", Some(LockOptions::new().with_lease(b))).await });
    until_keys(&mut client, "job/", 2).await;
    assert!(still_waiting(&waiter).await, "a second lock was granted while the first was held");
    let released = client.unlock(held.key()).await.expect("unlock");
    let granted = tokio::time::timeout(ANSWER, waiter).await.expect("lock passed on").expect("task").expect("lock");
    assert_eq!(text(granted.key()), format!("job/{b:x}"));
    let released_at = released.header().expect("header").revision();
    let granted_at = granted.header().expect("header").revision();
    assert!(granted_at >= released_at, "granted at revision {granted_at}, released at {released_at}");

    // A waiter whose client gives up leaves the queue: its key is deleted.
    let quitter = client.lease_grant(60, None).await.expect("grant").id();
    let mut other = client.clone();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        other.lock("job", Some(LockOptions::new().with_lease(quitter))),
    )
    .await;
    assert!(gave_up.is_err(), "the lock was granted while held: {gave_up:?}");
    let deadline = Instant::now() + ANSWER;
    while keys_with_prefix(&mut client, "job/").await.contains(&format!("job/{quitter:x}")) {
        assert!(Instant::now() < deadline, "the canceled waiter's key stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The holder's lease expires (nobody keeps it alive): the next waiter gets the lock.
    let short = client.lease_grant(2, None).await.expect("grant").id();
    let expiring = client.lock("res", Some(LockOptions::new().with_lease(short))).await.expect("lock");
    let next = client.lease_grant(60, None).await.expect("grant").id();
    let granted = client.lock("res", Some(LockOptions::new().with_lease(next))).await.expect("lock after expiry");
    assert_eq!(text(granted.key()), format!("res/{next:x}"));
    assert_eq!(keys_with_prefix(&mut client, "res/").await, vec![format!("res/{next:x}")]);
    assert_ne!(expiring.key(), granted.key());

    // Lease 0: the service grants a session lease of etcd's default 60 s, named in the key.
    let own = client.lock("solo", None).await.expect("lock without a lease");
    let lease_hex = text(own.key()).strip_prefix("solo/").expect("key under the name").to_owned();
    let lease = i64::from_str_radix(&lease_hex, 16).expect("a hex lease id");
    let ttl = client.lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("ttl");
    assert_eq!(ttl.granted_ttl(), 60);
    assert_eq!(ttl.keys().len(), 1);
}

/// The next leader an Observe stream reports, as `key=value`.
async fn observe_next(observer: &mut ObserveStream) -> String {
    let seen = tokio::time::timeout(ANSWER, observer.message()).await.expect("observed in time").expect("observe");
    let kv = seen.expect("stream open").kv().expect("a leader").clone();
    format!("{}={}", text(kv.key()), text(kv.value()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_service_campaigns_proclaims_observes_and_resigns() {
    let c = Cluster::start(1, "rs-elect");
    let mut client = connect(&c.members[0].endpoint()).await;

    assert_eq!(grpc_error(client.leader("office").await), unknown("election: no leader"));
    let mut observer = client.observe("office").await.expect("observe");

    let a = client.lease_grant(60, None).await.expect("grant").id();
    let b = client.lease_grant(60, None).await.expect("grant").id();
    let won = client.campaign("office", "alice", a).await.expect("uncontended campaign");
    let alice = won.leader().expect("a leader key").clone();
    assert_eq!(text(alice.key()), format!("office/{a:x}"));
    assert_eq!((alice.name(), alice.lease()), (&b"office"[..], a));
    assert_eq!(alice.rev(), won.header().expect("header").revision());

    let mut observed = vec![observe_next(&mut observer).await];

    let mut other = client.clone();
    let contender = tokio::spawn(async move { other.campaign("office", "bob", b).await });
    until_keys(&mut client, "office/", 2).await;
    assert!(still_waiting(&contender).await, "a second candidate won while the first led");

    client.proclaim("alice-2", Some(ProclaimOptions::new().with_leader(alice.clone()))).await.expect("proclaim");
    observed.push(observe_next(&mut observer).await);
    let leader = client.leader("office").await.expect("leader");
    assert_eq!(text(leader.kv().expect("kv").value()), "alice-2");

    // A leader key whose create revision does not match is not the leader.
    let stale = alice.clone().with_rev(alice.rev() + 1000);
    let refused = client.proclaim("usurper", Some(ProclaimOptions::new().with_leader(stale))).await;
    assert_eq!(grpc_error(refused), unknown("election: not leader"));
    let no_key = client.proclaim("nobody", None).await;
    assert_eq!(grpc_error(no_key), unknown("\"leader\" field must be provided"));
    assert_eq!(grpc_error(client.resign(None).await), unknown("\"leader\" field must be provided"));

    client.resign(Some(ResignOptions::new().with_leader(alice.clone()))).await.expect("resign");
    let won = tokio::time::timeout(ANSWER, contender).await.expect("hand-over").expect("task").expect("campaign");
    let bob = won.leader().expect("a leader key").clone();
    assert_eq!(text(bob.key()), format!("office/{b:x}"));
    observed.push(observe_next(&mut observer).await);
    // A candidate whose client gives up resigns: its key is deleted.
    let quitter = client.lease_grant(60, None).await.expect("grant").id();
    let mut other = client.clone();
    let gave_up = tokio::time::timeout(Duration::from_millis(500), other.campaign("office", "carol", quitter)).await;
    assert!(gave_up.is_err(), "a second candidate won while bob led: {gave_up:?}");
    let deadline = Instant::now() + ANSWER;
    while keys_with_prefix(&mut client, "office/").await.contains(&format!("office/{quitter:x}")) {
        assert!(Instant::now() < deadline, "the canceled candidate's key stayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Resigning again with the old key is no error, and changes nothing (etcd's Resign).
    client.resign(Some(ResignOptions::new().with_leader(alice.clone()))).await.expect("stale resign");
    let leader = client.leader("office").await.expect("leader");
    assert_eq!(text(leader.kv().expect("kv").value()), "bob");

    // The leader's lease ends: no leader.
    client.lease_revoke(b).await.expect("revoke");
    assert_eq!(grpc_error(client.leader("office").await), unknown("election: no leader"));
    assert_eq!(observed, [format!("office/{a:x}=alice"), format!("office/{a:x}=alice-2"), format!("office/{b:x}=bob")]);
    // A leader key built by hand works as the one Campaign returned.
    let rebuilt = LeaderKey::new().with_name("office").with_key(bob.key()).with_rev(bob.rev()).with_lease(b);
    let gone = client.proclaim("bob-2", Some(ProclaimOptions::new().with_leader(rebuilt))).await;
    assert_eq!(grpc_error(gone), unknown("election: not leader"));
}

/// The index of the member that leads, as the members themselves report it.
async fn leader_index(c: &Cluster) -> usize {
    let deadline = Instant::now() + ANSWER;
    loop {
        for (i, m) in c.members.iter().enumerate() {
            let status = connect(&m.endpoint()).await.status().await.expect("status");
            if status.header().is_some_and(|h| h.member_id() == status.leader()) {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no member leads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_on_a_follower_keeps_its_place_while_the_leader_dies() {
    let mut c = Cluster::start(3, "rs-lock-three");
    let leader = leader_index(&c).await;
    let (f1, f2) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut holder = connect(&c.members[f1].endpoint()).await;
    let mut waiter = connect(&c.members[f2].endpoint()).await;

    let a = holder.lease_grant(60, None).await.expect("grant").id();
    let b = waiter.lease_grant(60, None).await.expect("grant").id();
    let held = holder.lock("shared", Some(LockOptions::new().with_lease(a))).await.expect("lock on a follower");
    let mut queued = waiter.clone();
    let waiting = tokio::spawn(async move { queued.lock("shared", Some(LockOptions::new().with_lease(b))).await });
    until_keys(&mut waiter, "shared/", 2).await;

    // The waiter's wait is a watch on its own member's hub: the leader's death does not end it.
    c.members[leader].kill();
    assert!(still_waiting(&waiting).await, "the lock was granted while held");
    let deadline = Instant::now() + Duration::from_secs(30);
    let released = loop {
        match holder.unlock(held.key()).await {
            Ok(released) => break released,
            Err(e) => assert!(Instant::now() < deadline, "no unlock after the leader died: {e}\n{}", c.logs()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let granted = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the lock passed on")
        .expect("task")
        .expect("lock");
    assert_eq!(text(granted.key()), format!("shared/{b:x}"));
    let (released_at, granted_at) =
        (released.header().expect("header").revision(), granted.header().expect("header").revision());
    assert!(granted_at >= released_at, "granted at revision {granted_at}, released at {released_at}");
    // The election service answers on a follower too.
    waiter.campaign("office", "f2", b).await.expect("campaign on a follower");
    let leader_now = holder.leader("office").await.expect("leader on the other follower");
    assert_eq!(text(leader_now.kv().expect("kv").value()), "f2");
}
