//! etcd's plain-HTTP endpoints on the client port, beside gRPC: `GET /health`, `/version` and
//! `/metrics` (etcd 3.4's), `/livez` and `/readyz` (etcd 3.5's).
//!
//! etcd tells the two protocols apart per connection (cmux); so does [`is_grpc`]: a connection
//! that opens with HTTP/2's preface goes to gRPC, any other here, to [`serve_connection`], which
//! answers one HTTP/1.1 request and closes the connection. Every other path is 404 with etcd's
//! body; `/metrics` is [`crate::metrics`]'s; the JSON gateway (`/v3/...`) is not served yet
//! (README).

use std::time::Duration;

use bytes::Bytes;
use detcd_engine::node::{Request, Response};
use detcd_proto::etcdserverpb::RangeRequest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::driver::Handle;
use crate::grpc::ETCD_VERSION;

/// Largest request head (request line and headers) read; a longer one is answered 431.
pub const HTTP_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a connection may take to send its request head, or its first bytes to be told
/// apart (a client that connects and says nothing is gRPC's to time out).
pub const HTTP_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The health check's linearizable read: etcd 3.4 gives its health QGET about a second too.
pub const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// HTTP/2's client connection preface begins so; no HTTP/1 method does ("POST", "PUT ",
/// "PATCH" share only the first letter).
const H2_PREFACE_START: &[u8] = b"PRI ";

/// Whether a new client connection speaks gRPC (HTTP/2): waits for its first bytes, up to
/// [`HTTP_REQUEST_HEAD_TIMEOUT`]. Silence or a closed connection count as gRPC, whose server
/// deals with them as it always has.
pub async fn is_grpc(stream: &TcpStream) -> bool {
    let mut first = [0u8; 4];
    let peeked = tokio::time::timeout(HTTP_REQUEST_HEAD_TIMEOUT, async {
        loop {
            match stream.peek(&mut first).await {
                Ok(n) if n >= first.len() || n == 0 => return n,
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(_) => return 0,
            }
        }
    })
    .await;
    match peeked {
        Ok(n) if n >= first.len() => first == *H2_PREFACE_START,
        _ => true,
    }
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// A client URL: every path here, beside gRPC.
    Client,
    /// A `--listen-metrics-urls` URL: only `/metrics` and `/health`, as etcd serves there.
    Metrics,
}

/// Reads one HTTP/1.1 request head and answers it; then closes the connection.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, handle: Handle, listener: Listener) {
    let head = match tokio::time::timeout(HTTP_REQUEST_HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(HeadError::TooLarge)) => {
            let _ = respond(&mut stream, Reply::text(431, "Request Header Fields Too Large", "")).await;
            return;
        }
        Ok(Err(HeadError::Closed)) | Err(_) => return,
    };
    let reply = match parse_request_line(&head) {
        Some((_, path)) if listener == Listener::Metrics && !matches!(path, "/metrics" | "/health") => {
            Reply::text(404, "Not Found", "404 page not found\n")
        }
        Some((method, path)) => route(method, path, &handle).await,
        None => Reply::text(400, "Bad Request", "400 Bad Request"),
    };
    let _ = respond(&mut stream, reply).await;
}

enum HeadError {
    TooLarge,
    Closed,
}

/// Bytes up to the blank line that ends the request head.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await.map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > HTTP_REQUEST_HEAD_BYTES_MAX {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Method and path (without the query) of the request line `METHOD TARGET HTTP/1.x`.
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    Some((method, target.split('?').next().unwrap_or(target)))
}

async fn route(method: &str, path: &str, handle: &Handle) -> Reply {
    if !matches!(path, "/health" | "/version" | "/livez" | "/readyz" | "/metrics") {
        return Reply::text(404, "Not Found", "404 page not found\n");
    }
    if method != "GET" && method != "HEAD" {
        return Reply::text(405, "Method Not Allowed", "Method Not Allowed\n").allow("GET");
    }
    let reply = match path {
        "/health" => match healthy(handle).await {
            true => Reply::text(200, "OK", r#"{"health":"true"}"#),
            false => Reply::text(503, "Service Unavailable", r#"{"health":"false"}"#),
        },
        "/version" => {
            Reply::json(200, "OK", format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{ETCD_VERSION}"}}"#))
        }
        // The process answers: it is alive.
        "/livez" => Reply::text(200, "OK", "ok"),
        "/metrics" => Reply {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Reply::text(200, "OK", &handle.metrics().render())
        },
        _ => match healthy(handle).await {
            true => Reply::text(200, "OK", "ok"),
            false => Reply::text(503, "Service Unavailable", "not ready: no leader, or a linearizable read failed"),
        },
    };
    if method == "HEAD" {
        return Reply { body: String::new(), ..reply };
    }
    reply
}

/// etcd 3.4's health check: no alarm is raised (NOSPACE makes a member unhealthy), a leader is
/// known and a linearizable read (of the key `health`) succeeds in time.
async fn healthy(handle: &Handle) -> bool {
    if handle.status().await.map_or(true, |s| s.alarmed) {
        return false;
    }
    let read = Request::Range(RangeRequest { key: Bytes::from_static(b"health"), ..Default::default() });
    matches!(tokio::time::timeout(HEALTH_READ_TIMEOUT, handle.call(read)).await, Ok(Ok(Response::Range(_))))
}

struct Reply {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    allow: Option<&'static str>,
    body: String,
}

impl Reply {
    fn text(status: u16, reason: &'static str, body: &str) -> Reply {
        Reply { status, reason, content_type: "text/plain; charset=utf-8", allow: None, body: body.to_string() }
    }

    fn json(status: u16, reason: &'static str, body: String) -> Reply {
        Reply { status, reason, content_type: "application/json", allow: None, body }
    }

    fn allow(self, methods: &'static str) -> Reply {
        Reply { allow: Some(methods), ..self }
    }
}

async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, reply: Reply) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.reason,
        reply.content_type,
        reply.body.len()
    );
    if let Some(methods) = reply.allow {
        out.push_str(&format!("Allow: {methods}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_parsed_and_bad_ones_refused() {
        assert_eq!(parse_request_line(b"GET /health HTTP/1.1\r\nHost: x"), Some(("GET", "/health")));
        assert_eq!(parse_request_line(b"GET /health?serializable=true HTTP/1.0"), Some(("GET", "/health")));
        assert_eq!(parse_request_line(b"GET health HTTP/1.1"), None, "not a path");
        assert_eq!(parse_request_line(b"GET /health HTTP/2.0"), None, "not HTTP/1");
        assert_eq!(parse_request_line(b"GET /a b HTTP/1.1"), None, "a space in the target");
        assert_eq!(parse_request_line(b"\xff\xfe"), None);
    }
}
