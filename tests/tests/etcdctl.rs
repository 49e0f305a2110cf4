//! Debian's etcdctl 3.4 against real detcd processes: one member, then three.

use std::time::Duration;

use detcd_tests::{etcdctl, etcdctl_stdin, fails, ok, Cluster};

#[test]
fn etcdctl_against_one_member() {
    let c = Cluster::start(1, "one");
    let ep = c.endpoints();
    let ep = ep.as_str();
    assert_eq!(ok(etcdctl(ep, &["put", "foo", "bar"])), "OK\n");
    assert_eq!(ok(etcdctl(ep, &["get", "foo"])), "foo\nbar\n");
    ok(etcdctl(ep, &["put", "foo2", "baz"]));
    assert_eq!(ok(etcdctl(ep, &["get", "foo", "--prefix", "--keys-only"])), "foo\n\nfoo2\n\n");
    assert_eq!(ok(etcdctl(ep, &["get", "foo", "--prefix", "--print-value-only", "--limit=1"])), "bar\n");
    let json = ok(etcdctl(ep, &["get", "foo", "-w", "json"]));
    assert!(json.contains("\"count\":1"), "{json}");
    assert_eq!(ok(etcdctl(ep, &["del", "foo2"])), "1\n");

    // A txn from etcdctl's interactive syntax: compares, then success ops, then failure ops.
    let txn = ok(etcdctl_stdin(ep, &["txn"], "value(\"foo\") = \"bar\"\n\nput foo changed\n\nput foo failed\n\n"));
    assert!(txn.starts_with("SUCCESS"), "{txn}");
    assert_eq!(ok(etcdctl(ep, &["get", "foo", "--print-value-only"])), "changed\n");

    // etcd's errors, word for word.
    let err = fails(etcdctl(ep, &["get", "foo", "--rev=100000"]));
    assert!(err.contains("etcdserver: mvcc: required revision is a future revision"), "{err}");
    let revision = ok(etcdctl(ep, &["get", "foo", "-w", "json"]));
    let rev: i64 = revision.split("\"revision\":").nth(1).unwrap().split([',', '}']).next().unwrap().parse().unwrap();
    assert!(ok(etcdctl(ep, &["compaction", &rev.to_string()])).contains("compacted revision"));
    let err = fails(etcdctl(ep, &["get", "foo", "--rev=2"]));
    assert!(err.contains("etcdserver: mvcc: required revision has been compacted"), "{err}");

    // Leases.
    let grant = ok(etcdctl(ep, &["lease", "grant", "60"]));
    let lease = grant.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(grant.contains("granted with TTL(60s)"), "{grant}");
    ok(etcdctl(ep, &["put", "leased", "v", &format!("--lease={lease}")]));
    let ttl = ok(etcdctl(ep, &["lease", "timetolive", &lease, "--keys"]));
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    assert!(ok(etcdctl(ep, &["lease", "keep-alive", "--once", &lease])).contains("keepalived with TTL(60)"));
    assert!(ok(etcdctl(ep, &["lease", "list"])).contains(&lease));
    ok(etcdctl(ep, &["lease", "revoke", &lease]));
    assert_eq!(ok(etcdctl(ep, &["get", "leased"])), "", "revoking the lease deleted its key");
    let err = fails(etcdctl(ep, &["put", "k", "v", "--lease=1234"]));
    assert!(err.contains("etcdserver: requested lease not found"), "{err}");

    // Ranges: [a, c), from-key, sorted, at a revision; delete with the previous value.
    for (k, v) in [("a1", "3"), ("a2", "1"), ("b1", "2"), ("c1", "0")] {
        ok(etcdctl(ep, &["put", k, v]));
    }
    assert_eq!(ok(etcdctl(ep, &["get", "a", "c", "--keys-only"])), "a1\n\na2\n\nb1\n\n");
    assert_eq!(ok(etcdctl(ep, &["get", "b", "--from-key", "--keys-only"])), "b1\n\nc1\n\nfoo\n\n");
    assert_eq!(
        ok(etcdctl(ep, &["get", "a", "c", "--sort-by=VALUE", "--order=DESCEND", "--print-value-only"])),
        "3\n2\n1\n"
    );
    let a2_rev = ok(etcdctl(ep, &["get", "a2", "-w", "json"]));
    let a2_rev: i64 =
        a2_rev.split("\"mod_revision\":").nth(1).unwrap().split([',', '}']).next().unwrap().parse().unwrap();
    ok(etcdctl(ep, &["put", "a2", "later"]));
    assert_eq!(ok(etcdctl(ep, &["get", "a2", &format!("--rev={a2_rev}"), "--print-value-only"])), "1\n");
    assert_eq!(ok(etcdctl(ep, &["del", "c1", "--prev-kv"])), "1\nc1\n0\n");

    // Bad requests: etcd's errors.
    let err = fails(etcdctl(ep, &["put", "", "v"]));
    assert!(err.contains("etcdserver: key is not provided"), "{err}");
    // Over the 1.5 MiB limit, under etcdctl's own 2 MiB send limit.
    let big = "x".repeat(1_600_000);
    let err = fails(etcdctl_stdin(ep, &["put", "big"], &big));
    assert!(err.contains("etcdserver: request is too large"), "{err}");

    // A lease nobody keeps alive expires, and takes its key with it.
    let grant = ok(etcdctl(ep, &["lease", "grant", "2"]));
    let short = grant.split_whitespace().nth(1).unwrap().to_string();
    ok(etcdctl(ep, &["put", "ephemeral", "v", &format!("--lease={short}")]));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(ok(etcdctl(ep, &["get", "ephemeral"])), "", "an expired lease's key is gone");

    // Snapshot save streams the state image.
    let dir = detcd_tests::TempDir::new("snap");
    let file = dir.0.join("snapshot.db");
    let saved = ok(etcdctl(ep, &["snapshot", "save", file.to_str().unwrap()]));
    assert!(saved.contains("Snapshot saved at"), "{saved}");
    assert!(std::fs::metadata(&file).unwrap().len() > 0);

    // Cluster and maintenance.
    assert!(ok(etcdctl(ep, &["endpoint", "hashkv"])).contains(", "), "hashkv prints endpoint, hash");
    assert!(ok(etcdctl(ep, &["member", "list"])).contains("m1"));
    let status = ok(etcdctl(ep, &["endpoint", "status"]));
    assert!(status.contains("3.5.0"), "{status}");
    // etcdctl 3.4 prints the health verdict on stderr.
    let health = etcdctl(ep, &["endpoint", "health"]);
    assert!(health.status.success() && String::from_utf8_lossy(&health.stderr).contains("is healthy"), "{health:?}");
}

#[test]
fn etcdctl_watch_sees_writes_in_order() {
    let c = Cluster::start(1, "watch");
    let ep = c.endpoints();
    let mut watch = std::process::Command::new(detcd_tests::etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={ep}"), "watch", "w", "--prefix"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl watch");
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        ok(etcdctl(&ep, &["put", &format!("w{i}"), &format!("v{i}")]));
    }
    ok(etcdctl(&ep, &["del", "w1"]));
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "PUT\nw0\nv0\nPUT\nw1\nv1\nPUT\nw2\nv2\nDELETE\nw1\n\n", "{}", c.logs());

    // From a past revision, with previous values: the history replays, then live events follow.
    let mut replay = std::process::Command::new(detcd_tests::etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={ep}"), "watch", "w1", "--rev=1", "--prev-kv"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl watch --rev");
    std::thread::sleep(Duration::from_millis(500));
    ok(etcdctl(&ep, &["put", "w1", "again"]));
    std::thread::sleep(Duration::from_millis(500));
    let _ = replay.kill();
    let out = replay.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&out.stdout);
    // etcdctl prints an event's previous key-value before the key-value itself.
    assert_eq!(text, "PUT\nw1\nv1\nDELETE\nw1\nv1\nw1\n\nPUT\nw1\nagain\n", "{}", c.logs());
}

#[test]
fn three_members_survive_the_loss_of_their_leader() {
    let mut c = Cluster::start(3, "three");
    let all = c.endpoints();
    ok(etcdctl(&all, &["put", "before", "1"]));
    for m in &c.members {
        assert_eq!(ok(etcdctl(&m.endpoint(), &["get", "before", "--print-value-only"])), "1\n", "{}", m.name);
    }
    let status = ok(etcdctl(&all, &["endpoint", "status", "-w", "json"]));
    let leader: u64 = status.split("\"leader\":").nth(1).unwrap().split([',', '}']).next().unwrap().parse().unwrap();
    let leader_index = (0..3)
        .find(|&i| {
            let s = ok(etcdctl(&c.members[i].endpoint(), &["endpoint", "status", "-w", "json"]));
            s.contains(&format!("\"member_id\":{leader},"))
        })
        .expect("the leader is one of the members");
    // Every member publishes its name and client URL once it runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let members = ok(etcdctl(&all, &["member", "list"]));
        let published =
            |m: &detcd_tests::Member| members.contains(&format!("{}, {}, {}", m.name, m.peer_url, m.client_url));
        if c.members.iter().all(published) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not every member published its client URL: {members}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Leader-only requests sent to a follower are forwarded to the leader.
    let follower = c.members[(leader_index + 1) % 3].endpoint();
    let grant = ok(etcdctl(&follower, &["lease", "grant", "60"]));
    let lease = grant.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(ok(etcdctl(&follower, &["lease", "keep-alive", "--once", &lease])).contains("keepalived with TTL(60)"));
    assert!(ok(etcdctl(&follower, &["lease", "timetolive", &lease])).contains("granted with TTL(60s)"));
    assert!(ok(etcdctl(&follower, &["lease", "timetolive", "1234"])).contains("already expired"));

    c.members[leader_index].kill();
    let survivors = c.endpoints();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !etcdctl(&survivors, &["put", "after", "2"]).status.success() {
        assert!(std::time::Instant::now() < deadline, "no new leader: {}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    c.members[leader_index].start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let restarted = c.members[leader_index].endpoint();
    loop {
        let out = etcdctl(&restarted, &["get", "after", "--print-value-only"]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout) == "2\n" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the restarted member did not catch up: {}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Everyone agrees on the data.
    let hashes = ok(etcdctl(&c.endpoints(), &["endpoint", "hashkv", "-w", "json"]));
    let values: Vec<&str> = hashes.split("\"hash\":").skip(1).map(|h| h.split([',', '}']).next().unwrap()).collect();
    assert_eq!(values.len(), 3, "{hashes}");
    assert!(values.windows(2).all(|w| w[0] == w[1]), "members disagree: {hashes}");
    // A clean stop exits 0.
    for m in &mut c.members {
        assert!(m.terminate().is_some_and(|s| s.success()), "{} did not stop cleanly", m.name);
    }
}

/// Writes under load through every member while the leader is killed with SIGKILL: every
/// acknowledged write is there afterwards, on every member, and the members' hashes agree.
#[test]
fn no_acknowledged_write_is_lost_when_the_leader_is_killed_under_load() {
    let mut c = Cluster::start(3, "load");
    let endpoints: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let writers: Vec<_> = endpoints
        .iter()
        .enumerate()
        .map(|(w, ep)| {
            let ep = ep.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0..25 {
                    let key = format!("load/{w}/{i}");
                    if etcdctl(&ep, &["put", &key, "v"]).status.success() {
                        acked.push(key);
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let status = ok(etcdctl(&endpoints.join(","), &["endpoint", "status", "-w", "json"]));
    let leader: u64 = status.split("\"leader\":").nth(1).unwrap().split([',', '}']).next().unwrap().parse().unwrap();
    let victim = (0..3)
        .find(|&i| {
            ok(etcdctl(&endpoints[i], &["endpoint", "status", "-w", "json"]))
                .contains(&format!("\"member_id\":{leader},"))
        })
        .expect("the leader is a member");
    c.members[victim].kill();
    let acked: Vec<String> = writers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert!(acked.len() > 25, "too few writes got through: {}", acked.len());
    c.members[victim].start();
    c.wait_ready();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hashes = ok(etcdctl(&c.endpoints(), &["endpoint", "hashkv", "-w", "json"]));
        let values: Vec<&str> =
            hashes.split("\"hash\":").skip(1).map(|h| h.split([',', '}']).next().unwrap()).collect();
        if values.len() == 3 && values.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "members never agreed: {hashes}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(300));
    }
    for ep in &endpoints {
        let keys = ok(etcdctl(ep, &["get", "load/", "--prefix", "--keys-only", "--consistency=s"]));
        for key in &acked {
            assert!(keys.contains(&format!("{key}\n")), "{ep} lost acknowledged write {key}");
        }
    }
}

/// A member that was down while the others compacted their log catches up from a snapshot
/// sent in chunks over the peer service.
#[test]
fn a_member_behind_the_log_catches_up_from_a_snapshot() {
    let mut c =
        Cluster::start_with(3, "snapshot", &["--snapshot-count=10", "--experimental-snapshot-catchup-entries=5"]);
    c.members[2].kill();
    // If it led, a write proposed to it is lost and times out: wait for the next leader first.
    c.wait_ready();
    let up = c.endpoints();
    for i in 0..60 {
        let out = etcdctl(&up, &["put", &format!("s{i}"), &"v".repeat(1000)]);
        assert!(out.status.success(), "put {i}: {}\n{}", String::from_utf8_lossy(&out.stderr), c.logs());
    }
    c.members[2].start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hashes = etcdctl(&c.endpoints(), &["endpoint", "hashkv", "-w", "json"]);
        let text = String::from_utf8_lossy(&hashes.stdout).into_owned();
        let values: Vec<&str> = text.split("\"hash\":").skip(1).map(|h| h.split([',', '}']).next().unwrap()).collect();
        if hashes.status.success() && values.len() == 3 && values.windows(2).all(|w| w[0] == w[1]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the member did not catch up: {text}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        c.members[0].log().contains("raft snapshot sent") || c.members[1].log().contains("raft snapshot sent"),
        "{}",
        c.logs()
    );
    assert_eq!(
        ok(etcdctl(&c.members[2].endpoint(), &["get", "s59", "--print-value-only", "--consistency=s"])).len(),
        1001
    );
}

/// etcd's Go client 3.4 sends `:authority: http://host:port` for `--endpoints=http://...`, which
/// h2 alone refuses (PROTOCOL_ERROR); detcd rewrites it on each client connection.
#[test]
fn etcdctl_with_scheme_prefixed_endpoints_on_three_members() {
    let c = Cluster::start(3, "scheme");
    let urls: Vec<String> = c.members.iter().map(|m| m.client_url.clone()).collect();
    assert!(urls.iter().all(|u| u.starts_with("http://")));
    let all = urls.join(",");
    let first = urls[0].as_str();

    let mut watch = std::process::Command::new(detcd_tests::etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={}", urls[1]), "watch", "s", "--prefix"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("etcdctl watch");
    std::thread::sleep(Duration::from_millis(500));

    assert_eq!(ok(etcdctl(first, &["put", "s1", "one"])), "OK\n");
    assert_eq!(ok(etcdctl(&all, &["put", "s2", "two"])), "OK\n");
    assert_eq!(ok(etcdctl(&urls[2], &["get", "s", "--prefix"])), "s1\none\ns2\ntwo\n");
    // Several requests on one connection: the client's HPACK table is reused between them.
    let txn = ok(etcdctl_stdin(&urls[2], &["txn"], "value(\"s1\") = \"one\"\n\nput s3 three\n\nput s3 no\n\n"));
    assert!(txn.starts_with("SUCCESS"), "{txn}");
    assert_eq!(ok(etcdctl(first, &["del", "s2"])), "1\n");

    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        "PUT\ns1\none\nPUT\ns2\ntwo\nPUT\ns3\nthree\nDELETE\ns2\n\n",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );

    // `--cluster` dials every member at the client URL the member list advertises.
    let status = etcdctl(first, &["endpoint", "status", "--cluster", "-w", "json"]);
    let stderr = String::from_utf8_lossy(&status.stderr).into_owned();
    let json = ok(status);
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(json.matches("\"Status\"").count(), 3, "{json}");
    for url in &urls {
        assert!(json.contains(&format!("\"Endpoint\":\"{url}\"")), "{url} missing from {json}");
    }
    let health = etcdctl(first, &["endpoint", "health", "--cluster"]);
    let text = String::from_utf8_lossy(&health.stderr).into_owned();
    assert!(health.status.success(), "{text}");
    assert_eq!(text.matches("is healthy").count(), 3, "{text}");
}
