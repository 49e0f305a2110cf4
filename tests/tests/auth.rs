//! Auth with Debian's etcdctl 3.4: users, roles, key-range permissions, simple tokens; enable →
//! denied → allowed → forbidden → disable; the auth state across a restart and across members.
//! Members run with `--bcrypt-cost=4` (etcd's default is 10, slow in a debug build).

use std::time::{Duration, Instant};

use detcd_tests::{etcdctl, etcdctl_stdin, fails, ok, Cluster};

const FAST_BCRYPT: &[&str] = &["--bcrypt-cost=4"];

fn as_user(ep: &str, user: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--user", user];
    all.extend_from_slice(args);
    etcdctl(ep, &all)
}

#[test]
fn auth_enable_denied_allowed_forbidden_disable() {
    let mut c = Cluster::start_with(1, "auth", FAST_BCRYPT);
    let ep = c.endpoints();
    let ep = ep.as_str();
    let root = "root:rootpw";

    // Enabling needs the root user.
    let err = fails(etcdctl(ep, &["auth", "enable"]));
    assert!(err.contains("etcdserver: root user does not exist"), "{err}");
    assert!(ok(etcdctl(ep, &["user", "add", root])).contains("User root created"));
    // etcdctl adds the root role and grants it when enable says it is missing.
    assert!(ok(etcdctl(ep, &["auth", "enable"])).contains("Authentication Enabled"));

    // Denied without a user, allowed as root, refused with a wrong password.
    let err = fails(etcdctl(ep, &["put", "foo", "bar"]));
    assert!(err.contains("etcdserver: user name is empty"), "{err}");
    assert_eq!(ok(as_user(ep, root, &["put", "foo", "bar"])), "OK\n");
    let err = fails(as_user(ep, "root:wrong", &["get", "foo"]));
    assert!(err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");
    let err = fails(as_user(ep, "nobody:x", &["get", "foo"]));
    assert!(err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");

    // A reader of the prefix /pub/ and a writer of the single key /w.
    ok(as_user(ep, root, &["role", "add", "reader"]));
    ok(as_user(ep, root, &["role", "grant-permission", "reader", "read", "/pub/", "--prefix=true"]));
    ok(as_user(ep, root, &["role", "grant-permission", "reader", "write", "/w"]));
    ok(as_user(ep, root, &["user", "add", "alice:alicepw"]));
    ok(as_user(ep, root, &["user", "grant-role", "alice", "reader"]));
    ok(as_user(ep, root, &["put", "/pub/a", "1"]));
    let alice = "alice:alicepw";
    assert_eq!(ok(as_user(ep, alice, &["get", "/pub/a", "--print-value-only"])), "1\n");
    assert_eq!(ok(as_user(ep, alice, &["get", "/pub/", "--prefix", "--keys-only"])), "/pub/a\n\n");
    assert_eq!(ok(as_user(ep, alice, &["put", "/w", "x"])), "OK\n");
    for forbidden in [
        &["put", "/pub/a", "2"][..],
        &["get", "foo"],
        &["get", "/pub/", "--from-key"],
        &["get", "/w"],
        &["del", "/pub/a"],
        &["user", "list"],
        &["auth", "disable"],
    ] {
        let err = fails(as_user(ep, alice, forbidden));
        assert!(err.contains("etcdserver: permission denied"), "{forbidden:?}: {err}");
    }
    // A non-root user may not manage auth, root may; etcd's errors for what does not exist.
    let err = fails(as_user(ep, root, &["user", "get", "bob"]));
    assert!(err.contains("etcdserver: user name not found"), "{err}");
    let err = fails(as_user(ep, root, &["role", "get", "nope"]));
    assert!(err.contains("etcdserver: role name not found"), "{err}");
    let err = fails(as_user(ep, root, &["user", "add", "alice:again"]));
    assert!(err.contains("etcdserver: user name already exists"), "{err}");
    let roles = ok(as_user(ep, root, &["role", "get", "reader"]));
    assert!(roles.contains("[/pub/, /pub0)") && roles.contains("/w"), "{roles}");
    assert_eq!(ok(as_user(ep, root, &["user", "list"])), "alice\nroot\n");
    let err = fails(as_user(ep, root, &["user", "delete", "root"]));
    assert!(err.contains("etcdserver: invalid auth management"), "{err}");

    // The auth state survives a restart (tokens do not: etcdctl authenticates again).
    c.members[0].terminate();
    c.members[0].start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !as_user(ep, root, &["put", "ready", "1"]).status.success() {
        assert!(Instant::now() < deadline, "the member did not come back: {}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ok(as_user(ep, alice, &["get", "/pub/a", "--print-value-only"])), "1\n");
    let err = fails(as_user(ep, alice, &["put", "/pub/a", "2"]));
    assert!(err.contains("etcdserver: permission denied"), "{err}");
    let err = fails(etcdctl(ep, &["get", "foo"]));
    assert!(err.contains("etcdserver: user name is empty"), "{err}");

    // A changed password: the old one fails.
    ok(etcdctl_stdin(ep, &["--user", root, "user", "passwd", "alice", "--interactive=false"], "newpw\n"));
    let err = fails(as_user(ep, alice, &["get", "/pub/a"]));
    assert!(err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");
    assert_eq!(ok(as_user(ep, "alice:newpw", &["get", "/pub/a", "--print-value-only"])), "1\n");
    // Disable: everything is open again.
    assert!(ok(as_user(ep, root, &["auth", "disable"])).contains("Authentication Disabled"));
    assert_eq!(ok(etcdctl(ep, &["put", "foo", "plain"])), "OK\n");
    assert_eq!(ok(etcdctl(ep, &["get", "foo", "--print-value-only"])), "plain\n");
}
