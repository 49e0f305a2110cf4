//! etcd's plain-HTTP endpoints (/health, /version, /livez, /readyz) on the client port, beside
//! gRPC on the same port, end to end against real detcd processes. The requests are written by
//! hand over a TCP socket, so the test needs no HTTP client installed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use detcd_tests::{etcdctl, ok, Cluster};

/// How long any single answer may take before the test calls it lost.
const ANSWER: Duration = Duration::from_secs(10);

/// Status code and body of `METHOD path` at `endpoint` (`host:port`).
fn http(endpoint: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(endpoint).expect("connect to the client port");
    stream.set_read_timeout(Some(ANSWER)).expect("set a read timeout");
    // The server keeps connections alive: ask it to close this one after answering.
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer (the server closes the connection)");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of the head in {answer:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status line: {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    assert_eq!(body.len(), length, "the body is as long as the head says");
    (status, body.to_string())
}

fn host_port(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

#[test]
fn health_and_version_are_served_beside_grpc_and_health_follows_the_leader() {
    let mut cluster = Cluster::start(3, "http");
    cluster.wait_ready();
    let endpoints: Vec<String> = cluster.members.iter().map(|m| host_port(&m.endpoint()).to_string()).collect();
    for e in &endpoints {
        assert_eq!(http(e, "GET", "/health"), (200, r#"{"health":"true"}"#.to_string()), "{e}");
    }
    let one = &endpoints[0];
    let (status, version) = http(one, "GET", "/version");
    assert_eq!(status, 200);
    assert!(version.starts_with(r#"{"etcdserver":"3."#) && version.contains(r#""etcdcluster":"3."#), "{version}");
    assert_eq!(http(one, "GET", "/livez"), (200, "ok".to_string()));
    assert_eq!(http(one, "GET", "/readyz"), (200, "ok".to_string()));
    assert_eq!(http(one, "GET", "/health?serializable=false"), (200, r#"{"health":"true"}"#.to_string()));
    assert_eq!(http(one, "GET", "/no-such-path"), (404, "404 page not found\n".to_string()));
    assert_eq!(http(one, "POST", "/health"), (405, "Method Not Allowed\n".to_string()));

    // The same port still speaks gRPC.
    ok(etcdctl(&cluster.endpoints(), &["put", "via-grpc", "yes"]));
    assert_eq!(ok(etcdctl(&cluster.endpoints(), &["get", "via-grpc", "--print-value-only"])).trim(), "yes");

    // Two of three gone: the survivor has no quorum, so no leader for long; it is unhealthy.
    cluster.members[1].kill();
    cluster.members[2].kill();
    let deadline = Instant::now() + ANSWER * 3;
    loop {
        let (status, body) = http(one, "GET", "/health");
        if status == 503 {
            assert_eq!(body, r#"{"health":"false"}"#);
            break;
        }
        assert!(Instant::now() < deadline, "still healthy without a quorum: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(http(one, "GET", "/readyz").0, 503, "not ready either");
    assert_eq!(http(one, "GET", "/livez"), (200, "ok".to_string()), "but alive");
}

/// The value of the sample line `name` (with its labels, if any) in a /metrics answer.
fn sample(metrics: &str, name: &str) -> f64 {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
    line[name.len() + 1..].parse().unwrap_or_else(|_| panic!("not a number: {line}"))
}

#[test]
fn metrics_follow_the_member_and_logs_come_as_json_lines() {
    let metrics_port = detcd_tests::free_port();
    let metrics_url = format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}");
    let mut cluster = Cluster::start_with(1, "metrics", &["--log-format=json", &metrics_url]);
    cluster.wait_ready();
    let endpoint = host_port(&cluster.members[0].endpoint()).to_string();
    // The metrics listener serves /metrics and /health, nothing else.
    let metrics_only = format!("127.0.0.1:{metrics_port}");
    assert_eq!(http(&metrics_only, "GET", "/health"), (200, r#"{"health":"true"}"#.to_string()));
    assert!(http(&metrics_only, "GET", "/metrics").1.contains("etcd_server_has_leader 1\n"));
    assert_eq!(http(&metrics_only, "GET", "/version").0, 404);
    let (status, before) = http(&endpoint, "GET", "/metrics");
    assert_eq!(status, 200);
    assert!(before.contains("# TYPE etcd_server_has_leader gauge\n"), "{before}");
    assert_eq!(sample(&before, "etcd_server_has_leader"), 1.0);
    assert_eq!(sample(&before, "etcd_server_is_leader"), 1.0, "a single member leads");
    assert!(sample(&before, "etcd_server_leader_changes_seen_total") >= 1.0);
    let put = r#"grpc_server_started_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;
    let puts_before = sample(&before, put);
    for i in 0..5 {
        ok(etcdctl(&cluster.endpoints(), &["put", &format!("k{i}"), "v"]));
    }
    let bad = detcd_tests::fails(etcdctl(&cluster.endpoints(), &["put", "", "v"]));
    assert!(bad.contains("key is not provided"), "{bad}");
    let (_, after) = http(&endpoint, "GET", "/metrics");
    assert_eq!(sample(&after, put), puts_before + 6.0);
    let handled = |code: &str| {
        format!(
            r#"grpc_server_handled_total{{grpc_code="{code}",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}}"#
        )
    };
    assert!(sample(&after, &handled("OK")) >= 5.0);
    assert_eq!(sample(&after, &handled("InvalidArgument")), 1.0);
    let applied = "etcd_server_proposals_applied_total";
    assert!(sample(&after, applied) >= sample(&before, applied) + 5.0, "five puts applied");
    assert!(sample(&after, "etcd_disk_wal_fsync_duration_seconds_count") >= 5.0, "each put synced the WAL");
    assert!(sample(&after, "etcd_mvcc_db_total_size_in_bytes") > sample(&before, "etcd_mvcc_db_total_size_in_bytes"));
    assert!(after.contains("etcd_disk_backend_commit_duration_seconds_bucket{le=\"+Inf\"}"));
    assert_eq!(sample(&after, "etcd_server_proposals_pending"), 0.0);

    cluster.members[0].terminate();
    let log = cluster.members[0].log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the member logged nothing");
    for line in lines {
        assert!(
            line.starts_with('{') && line.ends_with('}') && line.contains(r#""level":"#),
            "not a JSON log line: {line}"
        );
    }
}
