//! Auth with Debian's etcdctl 3.4: users, roles, key-range permissions, simple tokens; enable →
//! denied → allowed → forbidden → disable; the auth state across a restart and across members.
//! Members run with `--bcrypt-cost=4` (etcd's default is 10, slow in a debug build).

use std::time::{Duration, Instant};

use detcd_tests::{detcd_bin, etcdctl, etcdctl_stdin, fails, free_port, ok, openssl, Cluster, TempDir};

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
    // Lock and Election act on keys as the caller: alice may not write under the lock's name.
    let err = fails(as_user(ep, alice, &["lock", "/pub/lk", "echo", "held"]));
    assert!(err.contains("etcdserver: permission denied"), "{err}");
    assert_eq!(ok(as_user(ep, root, &["lock", "/pub/lk", "echo", "held"])), "held\n");
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

/// POSTs JSON through the gateway with curl, with an `Authorization` header if given.
fn curl_post(base: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut command = std::process::Command::new("curl");
    command.args(["-s", "-S", "--max-time", "10", "-X", "POST", "-w", "\n%{http_code}", "--data-binary", body]);
    if let Some(t) = token {
        command.args(["-H", &format!("Authorization: {t}")]);
    }
    let out = command.arg(format!("{base}{path}")).output().expect("run curl");
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (body, code) = text.rsplit_once('\n').expect("the status line curl adds");
    (code.parse().expect("a status code"), body.to_string())
}

/// Three members: auth enabled through one, tokens and permissions honoured by every member
/// (etcdctl given all endpoints, and each alone); the JSON gateway's `/v3/auth/*` and its
/// `Authorization` header.
#[test]
fn auth_across_three_members_and_the_gateway() {
    let c = Cluster::start_with(3, "auth3", FAST_BCRYPT);
    let all = c.endpoints();
    let eps: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let root = "root:rootpw";
    ok(etcdctl(&eps[0], &["user", "add", root]));
    ok(etcdctl(&eps[0], &["role", "add", "root"]));
    ok(etcdctl(&eps[0], &["user", "grant-role", "root", "root"]));
    ok(etcdctl(&eps[1], &["auth", "enable"]));
    for (i, ep) in eps.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A member that has not applied the enable yet still takes the put.
            let out = etcdctl(ep, &["put", "k", "v"]);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if !out.status.success() && err.contains("etcdserver: user name is empty") {
                break;
            }
            assert!(Instant::now() < deadline, "member {i}: {err}");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(ok(as_user(ep, root, &["put", &format!("k{i}"), "v"])), "OK\n");
    }
    assert_eq!(ok(as_user(&all, root, &["get", "k", "--prefix", "--keys-only"])), "k0\n\nk1\n\nk2\n\n");

    // The gateway: authenticate, then the token in the Authorization header.
    let base = format!("http://{}", eps[2].trim_start_matches("http://"));
    let (code, body) = curl_post(&base, "/v3/auth/status", "{}", None);
    assert!(code == 200 && body.contains("\"enabled\":true"), "{code} {body}");
    let (code, body) = curl_post(&base, "/v3/kv/range", r#"{"key":"azA="}"#, None);
    assert!(code == 400 && body.contains("etcdserver: user name is empty"), "{code} {body}");
    let (code, body) = curl_post(&base, "/v3/auth/authenticate", r#"{"name":"root","password":"bad"}"#, None);
    assert!(code == 400 && body.contains("authentication failed"), "{code} {body}");
    let (code, body) = curl_post(&base, "/v3/auth/authenticate", r#"{"name":"root","password":"rootpw"}"#, None);
    assert_eq!(code, 200, "{body}");
    let token = body.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).expect("a token").to_string();
    let (code, body) = curl_post(&base, "/v3/kv/range", r#"{"key":"azA="}"#, Some(&token));
    assert!(code == 200 && body.contains("\"count\":\"1\""), "{code} {body}");
    let (code, body) = curl_post(&base, "/v3/auth/user/list", "{}", Some(&token));
    assert!(code == 200 && body.contains("root"), "{code} {body}");
    let (code, body) = curl_post(&base, "/v3/kv/range", r#"{"key":"azA="}"#, Some("forged.7"));
    assert!(code == 401 && body.contains("etcdserver: invalid auth token"), "{code} {body}");
    // A token issued by one member works at another (issued through raft).
    let other = format!("http://{}", eps[0].trim_start_matches("http://"));
    // (Once that member applied the token's entry: as with etcd's simple tokens, a member
    // lagging behind the one that issued it does not know it yet.)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = curl_post(&other, "/v3/kv/put", r#"{"key":"azM=","value":"dg=="}"#, Some(&token));
        if code == 200 {
            break;
        }
        assert!(Instant::now() < deadline && body.contains("invalid auth token"), "{code} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(as_user(&all, root, &["auth", "disable"]));
}

/// An RSA key pair made by openssl in `dir`: (`jwt.pub`, `jwt.key`).
fn rsa_key_pair(dir: &TempDir) -> (String, String) {
    openssl(&dir.0, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "jwt.key"]);
    openssl(&dir.0, &["pkey", "-in", "jwt.key", "-pubout", "-out", "jwt.pub"]);
    let path = |f: &str| dir.0.join(f).to_str().expect("UTF-8 temp dir").to_string();
    (path("jwt.pub"), path("jwt.key"))
}

/// JWT tokens (`--auth-token jwt,...`, RS256, a 2 s ttl) on three members sharing one key
/// pair: etcdctl with `--user`, a token issued by one member accepted by the others at once
/// (no raft round), a tampered token and an expired one refused with etcd's "invalid auth
/// token", a token older than the last auth change refused with "revision of auth store is old".
#[test]
fn jwt_tokens_across_three_members() {
    let keys = TempDir::new("jwt-keys");
    let (public, private) = rsa_key_pair(&keys);
    let jwt = format!("--auth-token=jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl=2s");
    let c = Cluster::start_with(3, "jwt", &["--bcrypt-cost=4", &jwt]);
    let eps: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let root = "root:rootpw";
    assert!(ok(etcdctl(&eps[0], &["user", "add", root])).contains("User root created"));
    assert!(ok(etcdctl(&eps[0], &["auth", "enable"])).contains("Authentication Enabled"));
    assert_eq!(ok(as_user(&eps[0], root, &["put", "foo", "bar"])), "OK\n");
    assert_eq!(ok(as_user(&eps[0], root, &["get", "foo", "--print-value-only"])), "bar\n");
    let err = fails(as_user(&eps[0], "root:wrong", &["get", "foo"]));
    assert!(err.contains("etcdserver: authentication failed, invalid user ID or password"), "{err}");
    let err = fails(etcdctl(&eps[0], &["get", "foo"]));
    assert!(err.contains("etcdserver: user name is empty"), "{err}");

    // Every member has applied the enable.
    for (i, ep) in eps.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = etcdctl(ep, &["get", "foo"]);
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            if !out.status.success() && err.contains("etcdserver: user name is empty") {
                break;
            }
            assert!(Instant::now() < deadline, "member {i}: {err}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // A token from member 0, through the gateway: a JWT, taken by members 1 and 2 at once.
    let base = |i: usize| format!("http://{}", eps[i].trim_start_matches("http://"));
    let (code, body) = curl_post(&base(0), "/v3/auth/authenticate", r#"{"name":"root","password":"rootpw"}"#, None);
    assert_eq!(code, 200, "{body}");
    let token = body.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).expect("a token").to_string();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token}");
    for i in [1, 2] {
        let (code, body) = curl_post(&base(i), "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&token));
        assert!(code == 200 && body.contains("\"count\":\"1\""), "member {i}: {code} {body}");
    }
    // Tampered: the signature's last characters changed, or another user's payload.
    let mut tampered = token.clone();
    let tail = tampered.split_off(token.len() - 4);
    tampered.push_str(if tail == "AAAA" { "BBBB" } else { "AAAA" });
    let parts: Vec<&str> = token.split('.').collect();
    // base64url of {"exp":9999999999,"revision":2,"username":"root"}
    let forged =
        format!("{}.eyJleHAiOjk5OTk5OTk5OTksInJldmlzaW9uIjoyLCJ1c2VybmFtZSI6InJvb3QifQ.{}", parts[0], parts[2]);
    for bad in [tampered.as_str(), forged.as_str(), "simple.7"] {
        let (code, body) = curl_post(&base(1), "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(bad));
        assert!(code == 401 && body.contains("etcdserver: invalid auth token"), "{bad}: {code} {body}");
    }
    // etcdctl itself on another member (it authenticates there).
    assert_eq!(ok(as_user(&eps[2], root, &["get", "foo", "--print-value-only"])), "bar\n");

    // Past its ttl (2 s; exp is in whole seconds): refused.
    std::thread::sleep(Duration::from_secs(4));
    let (code, body) = curl_post(&base(1), "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&token));
    assert!(code == 401 && body.contains("etcdserver: invalid auth token"), "{code} {body}");

    // A token issued before an auth change is old.
    let (code, body) = curl_post(&base(2), "/v3/auth/authenticate", r#"{"name":"root","password":"rootpw"}"#, None);
    assert_eq!(code, 200, "{body}");
    let token = body.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).expect("a token").to_string();
    ok(as_user(&eps[0], root, &["user", "add", "alice:alicepw"]));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (code, body) = curl_post(&base(2), "/v3/kv/range", r#"{"key":"Zm9v"}"#, Some(&token));
        if code == 400 && body.contains("etcdserver: revision of auth store is old") {
            break;
        }
        assert!(code == 200 && Instant::now() < deadline, "{code} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(as_user(&eps[1], root, &["auth", "disable"]));
}

/// A member given bad JWT options or keys refuses to start, saying why.
#[test]
fn jwt_bad_options_refuse_to_start() {
    let keys = TempDir::new("jwt-bad");
    let (public, private) = rsa_key_pair(&keys);
    std::fs::write(keys.0.join("junk.pem"), "not a key").unwrap();
    let junk = keys.0.join("junk.pem").to_str().unwrap().to_string();
    for (option, why) in [
        (format!("jwt,pub-key={public},priv-key={private},sign-method=XX256"), "sign-method"),
        (format!("jwt,pub-key={public},priv-key={private},sign-method=RS256,ttl=5q"), "ttl"),
        (format!("jwt,pub-key={public},priv-key={private},sign-method=RS256,colour=red"), "unknown option"),
        (format!("jwt,pub-key={junk},priv-key={private},sign-method=RS256"), "pub-key is not an RSA public key"),
        (format!("jwt,pub-key={public},priv-key={junk},sign-method=RS256"), "priv-key is not an RSA private key"),
        (format!("jwt,pub-key={public}.missing,priv-key={private},sign-method=RS256"), "cannot read pub-key"),
    ] {
        let data = keys.0.join("data");
        let (client, peer) = (free_port(), free_port());
        let out = std::process::Command::new(detcd_bin())
            .args([
                format!("--auth-token={option}"),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
            ])
            .output()
            .expect("run detcd");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && text.contains(why), "{option}: {text}");
        let _ = std::fs::remove_dir_all(&data);
    }
}
