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

    // Cluster and maintenance.
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
    // A clean stop exits 0.
    for m in &mut c.members {
        assert!(m.terminate().is_some_and(|s| s.success()), "{} did not stop cleanly", m.name);
    }
}
