//! Membership changes with Debian's etcdctl 3.4, the way an operator makes them: a learner
//! added and started with the settings `member add` prints, caught up, promoted; a member
//! removed, then added back under the same peer URL with a fresh data dir.

use std::time::{Duration, Instant};

use detcd_tests::{etcdctl, free_port, ok, Cluster, Member};

/// How long each step may take to converge (elections, snapshots, publishing).
const STEP_DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// Polls `done` until it is true, or fails with `what` and the cluster's logs at the deadline.
fn eventually(c: &Cluster, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {STEP_DEADLINE:?}\n{}", c.logs());
        std::thread::sleep(POLL);
    }
}

/// Starts `member` and waits until it exits, as a member that must refuse to start does.
fn refused_at_start(member: &mut Member, what: &str) {
    member.start();
    let deadline = Instant::now() + STEP_DEADLINE;
    while !member.has_exited() {
        assert!(Instant::now() < deadline, "{what} still runs:\n{}", member.log());
        std::thread::sleep(POLL);
    }
}

/// What `etcdctl member add` printed: the new member's id (hex) and ETCD_INITIAL_CLUSTER.
fn parse_member_add(out: &str) -> (String, String) {
    let id = out
        .split_whitespace()
        .skip_while(|w| *w != "Member")
        .nth(1)
        .unwrap_or_else(|| panic!("no member id in {out:?}"))
        .to_string();
    let initial_cluster = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
        .unwrap_or_else(|| panic!("no ETCD_INITIAL_CLUSTER in {out:?}"))
        .trim_matches('"')
        .to_string();
    (id, initial_cluster)
}

/// The `member list` line of the member with peer URL `peer_url`.
fn member_line(endpoints: &str, peer_url: &str) -> Option<String> {
    let out = etcdctl(endpoints, &["member", "list"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find(|l| l.contains(&format!(", {peer_url},"))).map(str::to_string)
}

fn serializable_get(endpoint: &str, key: &str) -> Option<String> {
    let out = etcdctl(endpoint, &["get", key, "--print-value-only", "--consistency=s"]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[test]
fn a_learner_joins_is_promoted_and_a_removed_member_comes_back_under_a_new_id() {
    let mut c = Cluster::start(3, "membership");
    for i in 0..20 {
        ok(etcdctl(&c.endpoints(), &["put", &format!("k{i}"), &format!("v{i}")]));
    }
    // Founders publish their names, which `member add` prints in ETCD_INITIAL_CLUSTER.
    eventually(&c, "every founder published its name", || {
        c.members.iter().all(|m| member_line(&c.endpoints(), &m.peer_url).is_some_and(|l| l.contains(&m.name)))
    });

    // A member started to join without `member add` is refused, in etcd's words.
    let stranger_peer = format!("http://127.0.0.1:{}", free_port());
    let founders: Vec<String> = c.members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect();
    let initial_cluster = format!("{},stranger={stranger_peer}", founders.join(","));
    let stranger_client = format!("http://127.0.0.1:{}", free_port());
    let mut stranger = c.joiner("stranger", &stranger_client, &stranger_peer, "stranger", &initial_cluster);
    refused_at_start(&mut stranger, "a member nobody added");
    // etcd compares the counts first: --initial-cluster names one member more than the cluster.
    assert!(stranger.log().contains("member count is unequal"), "{}", stranger.log());

    // Add a learner and start it as `member add` says.
    let (client_url, peer_url) =
        (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
    let added = ok(etcdctl(&c.endpoints(), &["member", "add", "m4", &format!("--peer-urls={peer_url}"), "--learner"]));
    let (learner_id, initial_cluster) = parse_member_add(&added);
    assert!(added.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{added}");
    let line = member_line(&c.endpoints(), &peer_url).expect("the learner is listed");
    assert!(line.starts_with(&format!("{learner_id}, unstarted")) && line.ends_with(", true"), "{line}");

    // Started with an --initial-cluster that leaves out a member, it is refused in etcd's words.
    let m1_entry = format!("{}=", c.members[0].name);
    let short: Vec<&str> = initial_cluster.split(',').filter(|e| !e.starts_with(&m1_entry)).collect();
    let mut wrong = c.joiner("m4", &client_url, &peer_url, "m4-wrong", &short.join(","));
    refused_at_start(&mut wrong, "a joiner with a short --initial-cluster");
    assert!(wrong.log().contains("member count is unequal"), "{}", wrong.log());
    drop(wrong);
    let mut m4 = c.joiner("m4", &client_url, &peer_url, "m4", &initial_cluster);
    m4.start();
    // Until it is promoted and knows it, the learner refuses member RPCs (etcd's learner does):
    // those go to the voters.
    let voters = c.endpoints();
    c.members.push(m4);
    let m4_endpoint = c.members[3].endpoint();
    eventually(&c, "the learner caught up (serializable read on it)", || {
        serializable_get(&m4_endpoint, "k19").as_deref() == Some("v19")
    });
    let status = ok(etcdctl(&m4_endpoint, &["endpoint", "status", "-w", "json"]));
    assert!(status.contains("\"isLearner\":true"), "{status}");
    // A learner serves its clients only Status and serializable reads, as etcd's learner does:
    // writes, linearizable reads and the other RPCs get etcd's refusal.
    for refused in [&["put", "x", "y"][..], &["get", "k0"], &["member", "list"], &["endpoint", "hashkv"]] {
        let out = etcdctl(&m4_endpoint, refused);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("etcdserver: rpc not supported for learner"),
            "etcdctl {refused:?} on the learner: {stderr}"
        );
    }
    eventually(&c, "the learner was published", || {
        member_line(&voters, &peer_url).is_some_and(|l| l.contains(", started, m4, "))
    });

    // Promote it: refused while it is not in sync, then accepted.
    eventually(&c, "the learner was promoted", || {
        let out = etcdctl(&voters, &["member", "promote", &learner_id]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() || stderr.contains("in sync with leader"), "promote: {stderr}");
        out.status.success()
    });
    let line = member_line(&voters, &peer_url).expect("m4 is listed");
    assert!(line.ends_with(", false"), "m4 is a voter now: {line}");
    eventually(&c, "m4 reports itself a voter", || {
        let s = ok(etcdctl(&m4_endpoint, &["endpoint", "status", "-w", "json"]));
        !s.contains("\"isLearner\":true")
            && s.contains(&format!("\"member_id\":{}", u64::from_str_radix(&learner_id, 16).unwrap()))
    });
    // As a voter it serves linearizable reads, and writes.
    eventually(&c, "m4 serves a linearizable read", || {
        let out = etcdctl(&m4_endpoint, &["get", "k0", "--print-value-only"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) == "v0\n"
    });
    ok(etcdctl(&m4_endpoint, &["put", "written-through-m4", "yes"]));

    // Remove m2: its process stops.
    let m2_line = member_line(&c.endpoints(), &c.members[1].peer_url).expect("m2 is listed");
    let m2_old_id = m2_line.split(',').next().unwrap().to_string();
    ok(etcdctl(&c.members[0].endpoint(), &["member", "remove", &m2_old_id]));
    let deadline = Instant::now() + STEP_DEADLINE;
    while !c.members[1].has_exited() {
        assert!(Instant::now() < deadline, "the removed m2 still runs\n{}", c.logs());
        std::thread::sleep(POLL);
    }
    assert!(member_line(&c.members[0].endpoint(), &c.members[1].peer_url).is_none(), "m2 is no longer listed");
    for i in 20..30 {
        let put = |i: i32| etcdctl(&c.endpoints(), &["put", &format!("k{i}"), &format!("v{i}")]);
        eventually(&c, "a write after the removal", || put(i).status.success());
    }

    // Add it back under the same peer URL with a fresh data dir: it gets a new id.
    let (m2_client, m2_peer) = (c.members[1].client_url.clone(), c.members[1].peer_url.clone());
    let added = ok(etcdctl(&c.endpoints(), &["member", "add", "m2", &format!("--peer-urls={m2_peer}")]));
    let (m2_new_id, initial_cluster) = parse_member_add(&added);
    assert_ne!(m2_new_id, m2_old_id, "a removed member's id is never given again");
    let mut m2 = c.joiner("m2", &m2_client, &m2_peer, "m2-again", &initial_cluster);
    m2.start();
    c.members[1] = m2;
    eventually(&c, "the re-added m2 caught up", || {
        serializable_get(&c.members[1].endpoint(), "k29").as_deref() == Some("v29")
    });
    eventually(&c, "every member is started and a voter", || {
        c.members.iter().all(|m| {
            member_line(&c.endpoints(), &m.peer_url)
                .is_some_and(|l| l.contains(&format!(", started, {}, ", m.name)) && l.ends_with(", false"))
        })
    });
    let health = etcdctl(&c.endpoints(), &["endpoint", "health"]);
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));

    // All the data is there, on every member, and the members agree.
    for m in &c.members {
        for i in [0, 19, 20, 29] {
            assert_eq!(serializable_get(&m.endpoint(), &format!("k{i}")), Some(format!("v{i}")), "{} k{i}", m.name);
        }
    }
    eventually(&c, "the members' hashes agree", || {
        let out = etcdctl(&c.endpoints(), &["endpoint", "hashkv", "-w", "json"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let hashes: Vec<&str> = text.split("\"hash\":").skip(1).map(|h| h.split([',', '}']).next().unwrap()).collect();
        out.status.success() && hashes.len() == 4 && hashes.windows(2).all(|w| w[0] == w[1])
    });
}
