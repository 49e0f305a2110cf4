//! etcd's JSON gateway on detcd's client port, end to end with curl and with the etcd3gw Python
//! client, and compared field for field with Debian's etcd 3.4 (`/usr/bin/etcd`, package
//! `etcd-server`): the same requests to both, the same JSON shapes back.
//!
//! Needs curl, etcd 3.4 (or `$ETCD_BIN`) and a Python with etcd3gw: `$ETCD3GW_PYTHON`, else the
//! virtualenv `target/etcd3gw-venv` that tests/run-all.sh makes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use detcd_tests::{etcdctl, Cluster, Etcd};
use serde_json::{json, Value};

/// How long one answer may take.
const ANSWER: Duration = Duration::from_secs(10);

/// `method path` with `body` at `base` (`http://host:port`): the status and the body.
fn curl(base: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "-S", "--max-time", "10", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(body) = body {
        command.args(["--data-binary", body]);
    }
    let out = command.arg(format!("{base}{path}")).output().expect("run curl (apt-get install curl)");
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let (body, code) = text.rsplit_once('\n').expect("the status line curl adds");
    (code.parse().expect("a status code"), body.to_string())
}

/// POST `body` (JSON) to `path`: the status and the JSON answer.
fn post(base: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = curl(base, "POST", path, Some(&body.to_string()));
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text:?}"));
    (status, json)
}

/// POST that must succeed (200): the JSON answer.
fn ok(base: &str, path: &str, body: Value) -> Value {
    let (status, json) = post(base, path, &body);
    assert_eq!(status, 200, "{path} {body}: {json}");
    json
}

fn b64(s: &str) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A streaming POST (curl -N): its answer lines, as they come.
struct Stream {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Stream {
    fn open(base: &str, path: &str, body: &Value) -> Stream {
        let mut child = Command::new("curl")
            .args(["-s", "-N", "--data-binary", &body.to_string(), &format!("{base}{path}")])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run curl");
        let stdout = child.stdout.take().expect("curl's stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Stream { child, lines }
    }

    /// The next answer line, as JSON.
    fn next(&self) -> Value {
        let line = self.lines.recv_timeout(ANSWER).expect("a streamed answer in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }

    /// Every line until the server ends the answer.
    fn rest(self) -> Vec<Value> {
        let deadline = Instant::now() + ANSWER;
        let mut all = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => all.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))),
                Err(mpsc::RecvTimeoutError::Disconnected) => return all,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the stream did not end: {all:?}"),
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base(cluster: &Cluster) -> String {
    cluster.members[0].client_url.clone()
}

fn compacted() -> Value {
    let message = "etcdserver: mvcc: required revision has been compacted";
    json!({"error": message, "message": message, "code": 11})
}

#[test]
fn kv_txn_compaction_and_errors_through_the_gateway() {
    let cluster = Cluster::start(1, "gateway-kv");
    let e = base(&cluster);
    let put = ok(&e, "/v3/kv/put", json!({"key": b64("foo"), "value": b64("bar")}));
    let revision = put["header"]["revision"].as_str().expect("the revision is a JSON string").to_string();
    assert!(revision.parse::<i64>().unwrap() > 1);
    assert!(put["header"]["cluster_id"].is_string() && put["header"]["member_id"].is_string());

    let range = ok(&e, "/v3/kv/range", json!({"key": b64("foo")}));
    assert_eq!(range["count"], "1");
    let kv = &range["kvs"][0];
    assert_eq!((&kv["key"], &kv["value"], &kv["version"]), (&json!(b64("foo")), &json!(b64("bar")), &json!("1")));
    assert_eq!(kv["mod_revision"], json!(revision), "proto field names, as etcd's gateway (OrigName)");
    assert!(kv.get("lease").is_none(), "default values are left out");
    // Integers as numbers or strings, either field-name spelling, unknown fields ignored.
    let same = ok(
        &e,
        "/v3/kv/range",
        json!({"key": b64("foo"), "revision": revision.parse::<i64>().unwrap(), "keysOnly": true, "x": 1}),
    );
    assert_eq!(same["kvs"][0]["key"], json!(b64("foo")));
    assert!(same["kvs"][0].get("value").is_none(), "keys_only");
    // The deprecated /v3beta/ prefix is served too.
    assert_eq!(ok(&e, "/v3beta/kv/range", json!({"key": b64("foo")}))["count"], "1");

    // A transaction with a compare on the value.
    let txn = json!({
        "compare": [{"key": b64("foo"), "result": "EQUAL", "target": "VALUE", "value": b64("bar")}],
        "success": [{"request_put": {"key": b64("foo"), "value": b64("baz")}}],
        "failure": [{"request_range": {"key": b64("foo")}}],
    });
    let done = ok(&e, "/v3/kv/txn", txn.clone());
    assert_eq!(done["succeeded"], true);
    assert!(done["responses"][0]["response_put"]["header"].is_object(), "{done}");
    let again = ok(&e, "/v3/kv/txn", txn);
    assert!(again.get("succeeded").is_none(), "false is left out: {again}");
    assert_eq!(again["responses"][0]["response_range"]["kvs"][0]["value"], json!(b64("baz")));

    // Delete with prev_kv.
    ok(&e, "/v3/kv/put", json!({"key": b64("dir/a"), "value": b64("1")}));
    ok(&e, "/v3/kv/put", json!({"key": b64("dir/b"), "value": b64("2")}));
    let deleted = ok(&e, "/v3/kv/deleterange", json!({"key": b64("dir/"), "range_end": b64("dir0"), "prev_kv": true}));
    assert_eq!(deleted["deleted"], "2");
    assert_eq!(deleted["prev_kvs"][1]["value"], json!(b64("2")));

    // Compaction, then a read below it: etcd's error, in grpc-gateway's shape, 400.
    let now = ok(&e, "/v3/kv/range", json!({"key": b64("foo")}))["header"]["revision"].clone();
    ok(&e, "/v3/kv/compaction", json!({"revision": now, "physical": true}));
    assert_eq!(post(&e, "/v3/kv/range", &json!({"key": b64("foo"), "revision": revision})), (400, compacted()));

    // Errors: the server's (with etcd's text), the decoder's, the mux's.
    let no_key = "etcdserver: key is not provided";
    assert_eq!(
        post(&e, "/v3/kv/put", &json!({"value": b64("v")})),
        (400, json!({"error": no_key, "message": no_key, "code": 3}))
    );
    let (status, text) = curl(&e, "POST", "/v3/kv/range", Some(r#"{"key": "Zm9v","#));
    assert_eq!(status, 400, "a body that is not JSON");
    let bad: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!((&bad["code"], bad["error"] == bad["message"]), (&json!(3), true), "{bad}");
    let (status, _) = curl(&e, "POST", "/v3/kv/range", Some(r#"{"key": "not base64!"}"#));
    assert_eq!(status, 400, "bytes must be base64");
    assert_eq!(curl(&e, "POST", "/v3/kv/range", None).0, 400, "an empty body is the empty request: no key");
    assert_eq!(curl(&e, "GET", "/v3/kv/range", None), (405, "Method Not Allowed\n".into()));
    assert_eq!(curl(&e, "POST", "/v3/kv/nothing", Some("{}")), (404, "Not Found\n".into()));
    assert_eq!(curl(&e, "POST", "/v3alpha/kv/range", Some("{}")), (404, "404 page not found\n".into()));
    // Downgrade is not implemented: the gRPC service's Unimplemented (501), not a 404.
    assert_eq!(post(&e, "/v3/maintenance/downgrade", &json!({})).0, 501);
    // Auth is served (tests/tests/auth.rs has the rest): disabled, revision 0, left out.
    let (status, auth) = post(&e, "/v3/auth/status", &json!({}));
    assert_eq!((status, auth.get("enabled")), (200, None), "{auth}");

    // gRPC on the same port sees what the gateway wrote.
    assert_eq!(detcd_tests::ok(etcdctl(&cluster.endpoints(), &["get", "foo", "--print-value-only"])).trim(), "baz");
}

#[test]
fn leases_locks_elections_members_and_maintenance_through_the_gateway() {
    let cluster = Cluster::start(1, "gateway-lease");
    let e = base(&cluster);

    let grant = ok(&e, "/v3/lease/grant", json!({"TTL": 30}));
    let id = grant["ID"].as_str().expect("the lease id is a string").to_string();
    assert_eq!(grant["TTL"], "30");
    ok(&e, "/v3/kv/put", json!({"key": b64("leased"), "value": b64("v"), "lease": id}));
    // Keepalive: a stream; each request in the body is answered, then the stream ends.
    let keepalives = Stream::open(&e, "/v3/lease/keepalive", &json!({"ID": id})).rest();
    assert_eq!(keepalives.len(), 1, "{keepalives:?}");
    assert_eq!((&keepalives[0]["result"]["ID"], &keepalives[0]["result"]["TTL"]), (&json!(id), &json!("30")));
    let two = format!(r#"{{"ID": "{id}"}} {{"ID": {id}}}"#);
    let out =
        Command::new("curl").args(["-s", "-N", "--data-binary", &two, &format!("{e}/v3/lease/keepalive")]).output();
    let out = String::from_utf8(out.expect("curl").stdout).unwrap();
    assert_eq!(out.lines().count(), 2, "two keepalives, two answers: {out}");
    let ttl = ok(&e, "/v3/lease/timetolive", json!({"ID": id, "keys": true}));
    assert_eq!((&ttl["grantedTTL"], &ttl["keys"]), (&json!("30"), &json!([b64("leased")])));
    assert_eq!(ok(&e, "/v3/kv/lease/timetolive", json!({"ID": id}))["ID"], json!(id), "the /v3/kv/lease alias");
    assert_eq!(ok(&e, "/v3/lease/leases", json!({}))["leases"], json!([{"ID": id}]));
    assert_eq!(ok(&e, "/v3/kv/lease/leases", json!({}))["leases"], json!([{"ID": id}]));
    ok(&e, "/v3/lease/revoke", json!({"ID": id}));
    assert!(ok(&e, "/v3/kv/range", json!({"key": b64("leased")})).get("kvs").is_none(), "its key went with it");
    let gone = "etcdserver: requested lease not found";
    assert_eq!(
        post(&e, "/v3/kv/lease/revoke", &json!({"ID": id})),
        (404, json!({"error": gone, "message": gone, "code": 5}))
    );

    // Lock and unlock.
    let lease = ok(&e, "/v3/lease/grant", json!({"TTL": 30}))["ID"].clone();
    let locked = ok(&e, "/v3/lock/lock", json!({"name": b64("my-lock"), "lease": lease}));
    let key = locked["key"].as_str().expect("the lock's key").to_string();
    assert!(key.starts_with(&b64("my-lock/")[..8]), "{key}");
    ok(&e, "/v3/lock/unlock", json!({"key": key}));

    // Election: campaign, leader, proclaim, an observer, resign.
    let won = ok(&e, "/v3/election/campaign", json!({"name": b64("el"), "lease": lease, "value": b64("one")}));
    let leader_key = won["leader"].clone();
    assert_eq!(leader_key["name"], json!(b64("el")));
    let leader = ok(&e, "/v3/election/leader", json!({"name": b64("el")}));
    assert_eq!(leader["kv"]["value"], json!(b64("one")));
    let observer = Stream::open(&e, "/v3/election/observe", &json!({"name": b64("el")}));
    assert_eq!(observer.next()["result"]["kv"]["value"], json!(b64("one")));
    ok(&e, "/v3/election/proclaim", json!({"leader": leader_key, "value": b64("two")}));
    assert_eq!(observer.next()["result"]["kv"]["value"], json!(b64("two")), "the observer sees the proclamation");
    ok(&e, "/v3/election/resign", json!({"leader": leader_key}));
    let (status, none) = post(&e, "/v3/election/leader", &json!({"name": b64("el")}));
    assert!(status >= 400 && none["error"].as_str().is_some_and(|m| m.contains("no leader")), "{status} {none}");

    // Members and maintenance.
    let members = ok(&e, "/v3/cluster/member/list", json!({}));
    let member = &members["members"][0];
    assert_eq!(member["name"], "m1");
    assert_eq!(member["peerURLs"], json!([cluster.members[0].peer_url]));
    assert_eq!(member["clientURLs"], json!([cluster.members[0].client_url]));
    let status = ok(&e, "/v3/maintenance/status", json!({}));
    assert_eq!(status["leader"], member["ID"]);
    assert_eq!(status["header"]["member_id"], member["ID"]);
    assert!(status["version"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(ok(&e, "/v3/maintenance/hashkv", json!({}))["hash"].is_number(), "uint32 is a JSON number");
    let already = "etcdserver: Peer URLs already exists";
    let add = json!({"peerURLs": [cluster.members[0].peer_url]});
    assert_eq!(
        post(&e, "/v3/cluster/member/add", &add),
        (412, json!({"error": already, "message": already, "code": 9})),
        "FailedPrecondition is 412 in etcd 3.4's grpc-gateway"
    );
    let snapshot = Command::new("curl")
        .args(["-s", "--data-binary", "{}", &format!("{e}/v3/maintenance/snapshot")])
        .output()
        .expect("curl");
    let first = String::from_utf8(snapshot.stdout).unwrap();
    let first: Value = serde_json::from_str(first.lines().next().expect("a chunk")).expect("JSON");
    assert!(first["result"]["blob"].is_string(), "the snapshot comes as base64 chunks");
}

#[test]
fn a_watch_streams_events_until_the_client_goes() {
    let cluster = Cluster::start(1, "gateway-watch");
    let e = base(&cluster);
    let watch = Stream::open(&e, "/v3/watch", &json!({"create_request": {"key": b64("w"), "prev_kv": true}}));
    let created = watch.next();
    assert_eq!(created["result"]["created"], true, "{created}");
    // The request body has ended; the watch goes on (as etcd's).
    ok(&e, "/v3/kv/put", json!({"key": b64("w"), "value": b64("1")}));
    ok(&e, "/v3/kv/put", json!({"key": b64("w"), "value": b64("2")}));
    let first = watch.next();
    assert_eq!(first["result"]["events"][0]["kv"]["value"], json!(b64("1")), "{first}");
    assert!(first["result"]["events"][0].get("type").is_none(), "PUT is the default enum value: left out");
    let second = watch.next();
    assert_eq!(second["result"]["events"][0]["prev_kv"]["value"], json!(b64("1")), "{second}");
    ok(&e, "/v3/kv/deleterange", json!({"key": b64("w")}));
    assert_eq!(watch.next()["result"]["events"][0]["type"], "DELETE", "enums by name");
    drop(watch);

    // Two requests in one body: two watchers on one stream.
    let body = format!(
        "{}\n{}",
        json!({"create_request": {"key": b64("x")}}),
        json!({"create_request": {"key": b64("y"), "watch_id": 7}})
    );
    let mut child = Command::new("curl")
        .args(["-s", "-N", "--data-binary", &body, &format!("{e}/v3/watch")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let a: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let b: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!((a["result"]["created"].clone(), b["result"]["watch_id"].clone()), (json!(true), json!("7")));
    ok(&e, "/v3/kv/put", json!({"key": b64("y"), "value": b64("v")}));
    let event: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(event["result"]["watch_id"], "7");
    let _ = child.kill();
    let _ = child.wait();

    // A watch from a compacted revision: created, then canceled with the compact revision.
    let now: i64 = ok(&e, "/v3/kv/put", json!({"key": b64("w"), "value": b64("3")}))["header"]["revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    ok(&e, "/v3/kv/compaction", json!({"revision": now}));
    let old = Stream::open(&e, "/v3/watch", &json!({"create_request": {"key": b64("w"), "start_revision": 1}}));
    let mut canceled = old.next();
    if canceled["result"]["created"] == true {
        canceled = old.next();
    }
    assert_eq!(
        (&canceled["result"]["canceled"], &canceled["result"]["compact_revision"]),
        (&json!(true), &json!(now.to_string()))
    );
    // A first request that does not decode: grpc-gateway's Unknown, 500.
    let (status, text) = curl(&e, "POST", "/v3/watch", Some(r#"{"create_request": "#));
    assert_eq!((status, serde_json::from_str::<Value>(&text).unwrap()["code"].clone()), (500, json!(2)));
}

/// The Python interpreter with etcd3gw: `$ETCD3GW_PYTHON`, else tests/run-all.sh's virtualenv.
fn etcd3gw_python() -> PathBuf {
    let python = std::env::var("ETCD3GW_PYTHON").map(PathBuf::from).unwrap_or_else(|_| {
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("etcd3gw-venv/bin/python")
    });
    let found = Command::new(&python).args(["-c", "import etcd3gw"]).output().is_ok_and(|o| o.status.success());
    assert!(
        found,
        "no etcd3gw at {}: tests/run-all.sh makes that virtualenv (python3 -m venv target/etcd3gw-venv && \
         target/etcd3gw-venv/bin/pip install etcd3gw), or set ETCD3GW_PYTHON",
        python.display()
    );
    python
}

#[test]
fn the_etcd3gw_python_client_works_against_detcd() {
    let python = etcd3gw_python();
    let cluster = Cluster::start(1, "gateway-etcd3gw");
    let port = cluster.members[0].client_url.rsplit(':').next().unwrap().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/etcd3gw_client.py");
    let out = Command::new(python).arg(script).args(["127.0.0.1", &port]).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "etcd3gw against detcd failed:\n{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

/// Every path to a value in `v` with the value's JSON type (`a.b[].c: string`): what a client
/// may rely on, without the values.
fn shape(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(fields) => {
            out.insert(format!("{at}: object"));
            for (name, value) in fields {
                shape(value, &format!("{at}.{name}"), out);
            }
        }
        Value::Array(items) => {
            out.insert(format!("{at}: array"));
            for item in items {
                shape(item, &format!("{at}[]"), out);
            }
        }
        Value::String(_) => drop(out.insert(format!("{at}: string"))),
        Value::Number(_) => drop(out.insert(format!("{at}: number"))),
        Value::Bool(_) => drop(out.insert(format!("{at}: bool"))),
        Value::Null => drop(out.insert(format!("{at}: null"))),
    }
}

/// Answers as shapes with their status, in order.
struct Answers<'a> {
    e: &'a str,
    list: Vec<(String, u16, BTreeSet<String>)>,
}

impl Answers<'_> {
    fn note(&mut self, what: &str, status: u16, json: &Value) {
        let mut set = BTreeSet::new();
        shape(json, "", &mut set);
        self.list.push((what.to_string(), status, set));
    }

    fn call(&mut self, what: &str, path: &str, body: Value) -> Value {
        let (status, json) = post(self.e, path, &body);
        self.note(what, status, &json);
        json
    }
}

/// The same requests to one endpoint, answers as shapes with their status, in order.
fn scenario(e: &str) -> Vec<(String, u16, BTreeSet<String>)> {
    let mut answers = Answers { e, list: Vec::new() };
    answers.call("put", "/v3/kv/put", json!({"key": b64("k"), "value": b64("v1")}));
    answers.call("put prev_kv", "/v3/kv/put", json!({"key": b64("k"), "value": b64("v2"), "prev_kv": true}));
    let first = answers.call("range", "/v3/kv/range", json!({"key": b64("k")}));
    answers.call(
        "range count_only",
        "/v3/kv/range",
        json!({"key": b64("k"), "range_end": b64("l"), "count_only": true}),
    );
    answers.call("range missing", "/v3/kv/range", json!({"key": b64("nothing")}));
    answers.call(
        "txn",
        "/v3/kv/txn",
        json!({
            "compare": [{"key": b64("k"), "result": "EQUAL", "target": "VALUE", "value": b64("v2")}],
            "success": [{"request_put": {"key": b64("k"), "value": b64("v3")}}, {"request_range": {"key": b64("k")}}],
        }),
    );
    answers.call(
        "txn failed",
        "/v3/kv/txn",
        json!({"compare": [{"key": b64("k"), "target": "VERSION", "version": 99}]}),
    );
    answers.call("deleterange", "/v3/kv/deleterange", json!({"key": b64("k"), "prev_kv": true}));
    let lease = answers.call("lease grant", "/v3/lease/grant", json!({"TTL": 60}))["ID"].clone();
    answers.call("put with lease", "/v3/kv/put", json!({"key": b64("leased"), "value": b64("x"), "lease": lease}));
    answers.call("timetolive", "/v3/lease/timetolive", json!({"ID": lease, "keys": true}));
    answers.call("leases", "/v3/lease/leases", json!({}));
    for line in Stream::open(e, "/v3/lease/keepalive", &json!({"ID": lease})).rest() {
        answers.note("keepalive", 200, &line);
    }
    answers.call("revoke", "/v3/lease/revoke", json!({"ID": lease}));
    for line in Stream::open(e, "/v3/lease/keepalive", &json!({"ID": lease})).rest() {
        answers.note("keepalive unknown", 200, &line);
    }
    answers.call("revoke unknown", "/v3/lease/revoke", json!({"ID": lease}));
    answers.call("timetolive unknown", "/v3/lease/timetolive", json!({"ID": lease}));
    answers.call("member list", "/v3/cluster/member/list", json!({}));
    answers.call("status", "/v3/maintenance/status", json!({}));
    answers.call("hash", "/v3/maintenance/hash", json!({}));
    answers.call("alarm list", "/v3/maintenance/alarm", json!({}));
    answers.call("defragment", "/v3/maintenance/defragment", json!({}));
    let lock_lease = answers.call("lease for lock", "/v3/lease/grant", json!({"TTL": 60}))["ID"].clone();
    let locked = answers.call("lock", "/v3/lock/lock", json!({"name": b64("l"), "lease": lock_lease}));
    answers.call("unlock", "/v3/lock/unlock", json!({"key": locked["key"]}));
    let won = answers.call(
        "campaign",
        "/v3/election/campaign",
        json!({"name": b64("e"), "lease": lock_lease, "value": b64("a")}),
    );
    answers.call("leader", "/v3/election/leader", json!({"name": b64("e")}));
    answers.call("proclaim", "/v3/election/proclaim", json!({"leader": won["leader"], "value": b64("b")}));
    answers.call("resign", "/v3/election/resign", json!({"leader": won["leader"]}));
    let watch = Stream::open(e, "/v3/watch", &json!({"create_request": {"key": b64("w"), "prev_kv": true}}));
    answers.note("watch created", 200, &watch.next());
    answers.call("put watched", "/v3/kv/put", json!({"key": b64("w"), "value": b64("1")}));
    answers.note("watch event", 200, &watch.next());
    answers.call("put watched again", "/v3/kv/put", json!({"key": b64("w"), "value": b64("2")}));
    answers.note("watch event with prev_kv", 200, &watch.next());
    drop(watch);
    let now =
        answers.call("range for the revision", "/v3/kv/range", json!({"key": b64("w")}))["header"]["revision"].clone();
    answers.call("compaction", "/v3/kv/compaction", json!({"revision": now}));
    answers.call("range compacted", "/v3/kv/range", json!({"key": b64("w"), "revision": first["header"]["revision"]}));
    answers.call("range future", "/v3/kv/range", json!({"key": b64("w"), "revision": 1_000_000}));
    answers.call("put without key", "/v3/kv/put", json!({"value": b64("v")}));
    let (status, text) = curl(e, "POST", "/v3/kv/range", Some(r#"{"key": 1"#));
    answers.note("bad JSON", status, &serde_json::from_str(&text).expect("JSON"));
    for (what, method, path) in [("GET", "GET", "/v3/kv/range"), ("unknown path", "POST", "/v3/kv/nothing")] {
        let (status, text) = curl(e, method, path, Some("{}"));
        answers.note(what, status, &Value::String(text));
    }
    answers.list
}

/// Differences from etcd 3.4 that are known (each answer's name, and the paths only detcd's,
/// then only etcd's, answer has). All are the gRPC services' answers, passed on as they are:
/// detcd's give a full header where etcd 3.4's give none (Alarm, Defragment) or one without the
/// revision (MemberList).
const KNOWN_DIFFERENCES: &[(&str, &[&str], &[&str])] =
    &[("member list", &[".header.revision: string"], &[]), ("alarm list", HEADER, &[]), ("defragment", HEADER, &[])];

const HEADER: &[&str] = &[
    ".header.cluster_id: string",
    ".header.member_id: string",
    ".header.raft_term: string",
    ".header.revision: string",
    ".header: object",
];

#[test]
fn the_gateways_answers_have_etcd_3_4s_shapes() {
    let etcd = Etcd::start();
    let cluster = Cluster::start(1, "gateway-shapes");
    let theirs = scenario(&etcd.client_url);
    let ours = scenario(&base(&cluster));
    assert_eq!(ours.len(), theirs.len(), "as many answers");
    let mut differences = Vec::new();
    for ((what, status, shape), (_, etcd_status, etcd_shape)) in ours.iter().zip(&theirs) {
        assert_eq!(status, etcd_status, "{what}: detcd's status is not etcd's");
        let only_ours: Vec<&String> = shape.difference(etcd_shape).collect();
        let only_theirs: Vec<&String> = etcd_shape.difference(shape).collect();
        let known = KNOWN_DIFFERENCES.iter().find(|(w, _, _)| w == what);
        let expected_ours: Vec<&str> = known.map(|k| k.1.to_vec()).unwrap_or_default();
        let expected_theirs: Vec<&str> = known.map(|k| k.2.to_vec()).unwrap_or_default();
        if only_ours.iter().map(|s| s.as_str()).collect::<Vec<_>>() != expected_ours
            || only_theirs.iter().map(|s| s.as_str()).collect::<Vec<_>>() != expected_theirs
        {
            differences.push(format!("{what}: only detcd {only_ours:?}, only etcd {only_theirs:?}"));
        }
    }
    assert!(differences.is_empty(), "shapes differ from etcd 3.4's:\n{}", differences.join("\n"));
}
