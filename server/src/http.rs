//! The client port's HTTP/1.1 side, beside gRPC: etcd's plain-HTTP endpoints `GET /health`,
//! `/version` and `/metrics` (etcd 3.4's), `/livez` and `/readyz` (etcd 3.5's), and the JSON
//! gateway under `/v3/` ([`crate::gateway`]).
//!
//! etcd tells the two protocols apart per connection (cmux); so does [`is_grpc`]: a connection
//! that opens with HTTP/2's preface goes to gRPC, any other here, to [`serve_connection`]:
//! hyper's HTTP/1.1 server (keep-alive, request bodies, chunked streamed answers). Every other
//! path is 404 with etcd's body; `/metrics` is [`crate::metrics`]'s. As etcd 3.4 (whose
//! `--cors` defaults to `*`), every answer on a client URL carries the CORS headers and an
//! `OPTIONS` request is answered 200 with them alone.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use detcd_engine::node::{Request, Response};
use detcd_proto::etcdserverpb::RangeRequest;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::driver::Handle;
use crate::gateway::{Body, Gateway};
use crate::grpc::ETCD_VERSION;

/// Largest request head (request line and headers) read; a longer one is answered 431. (hyper's
/// read buffer, which bounds the head, can be no smaller.)
pub const HTTP_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// How long a connection may take to be told apart (its first bytes) or to finish its TLS
/// handshake (a client that connects and says nothing is gRPC's to time out).
pub const HTTP_REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an HTTP/1.1 connection may take to send a request head, counted from the end of
/// the previous answer: so also how long a kept-alive connection may idle.
pub const HTTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
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

/// Serves HTTP/1.1 requests on one connection until the client closes it or idles too long.
/// `gateway`: the JSON gateway, on client URLs only.
pub async fn serve_connection<S>(stream: S, handle: Handle, listener: Listener, gateway: Option<Gateway>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let (handle, gateway) = (handle.clone(), gateway.clone());
        async move { Ok::<_, Infallible>(answer(request, &handle, listener, gateway.as_ref()).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HTTP_IDLE_TIMEOUT)
        .max_buf_size(HTTP_REQUEST_HEAD_BYTES_MAX)
        // Go writes canonical header names; some clients (and our tests) read them so.
        .title_case_headers(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

async fn answer(
    request: http::Request<hyper::body::Incoming>,
    handle: &Handle,
    listener: Listener,
    gateway: Option<&Gateway>,
) -> http::Response<Body> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if listener == Listener::Metrics {
        if !matches!(path.as_str(), "/metrics" | "/health") {
            return Reply::text(404, "404 page not found\n").into_response();
        }
        return route(method.as_str(), &path, handle).await.into_response();
    }
    let mut response = if method == Method::OPTIONS {
        // etcd's CORS handler answers a preflight itself.
        http::Response::new(Body::Full(None))
    } else {
        match gateway {
            Some(gateway) if crate::gateway::serves(&path) => gateway.serve(request).await,
            _ => route(method.as_str(), &path, handle).await.into_response(),
        }
    };
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    headers.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    response
}

async fn route(method: &str, path: &str, handle: &Handle) -> Reply {
    if !matches!(path, "/health" | "/version" | "/livez" | "/readyz" | "/metrics") {
        return Reply::text(404, "404 page not found\n");
    }
    if method != "GET" && method != "HEAD" {
        return Reply::text(405, "Method Not Allowed\n").allow("GET");
    }
    let reply = match path {
        "/health" => match healthy(handle).await {
            true => Reply::text(200, r#"{"health":"true"}"#),
            false => Reply::text(503, r#"{"health":"false"}"#),
        },
        "/version" => Reply::json(200, format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{ETCD_VERSION}"}}"#)),
        // The process answers: it is alive.
        "/livez" => Reply::text(200, "ok"),
        "/metrics" => Reply {
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            ..Reply::text(200, &handle.metrics().render())
        },
        _ => match healthy(handle).await {
            true => Reply::text(200, "ok"),
            false => Reply::text(503, "not ready: no leader, or a linearizable read failed"),
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
    content_type: &'static str,
    allow: Option<&'static str>,
    body: String,
}

impl Reply {
    fn text(status: u16, body: &str) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", allow: None, body: body.to_string() }
    }

    fn json(status: u16, body: String) -> Reply {
        Reply { status, content_type: "application/json", allow: None, body }
    }

    fn allow(self, methods: &'static str) -> Reply {
        Reply { allow: Some(methods), ..self }
    }

    fn into_response(self) -> http::Response<Body> {
        let mut response = http::Response::new(Body::Full(Some(Bytes::from(self.body))));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(methods) = self.allow {
            response.headers_mut().insert("allow", HeaderValue::from_static(methods));
        }
        response
    }
}
