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
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {endpoint}\r\nAccept: */*\r\n\r\n").expect("send the request");
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
