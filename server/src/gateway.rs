//! etcd's JSON gateway on the client port: `POST /v3/...` with a JSON body, answered in JSON,
//! as etcd 3.4 serves it (grpc-gateway v1 with `runtime.JSONPb{OrigName: true}`).
//!
//! # How a request is served
//!
//! etcd's gateway is a gRPC client of its own member. So is this one, but without a socket: it
//! calls the member's gRPC services in process, through the same tonic [`Routes`] (and the same
//! metrics layer) the gRPC listener serves, with tonic's client codec. Why in process and not
//! over loopback, as etcd does: the same code path and the same answers as a gRPC client gets
//! (every check, every error text, Lock and Election included), streaming RPCs (Watch,
//! LeaseKeepAlive, Observe, Snapshot) for free, and no second connection to set up — no TLS
//! client certificate to present when `--client-cert-auth` is on, no port to wait for. Calls
//! through the gateway are counted in `/metrics` as gRPC calls, as etcd's are.
//!
//! # The JSON mapping
//!
//! The proto3 JSON mapping comes from `detcd-proto`'s `json` feature (pbjson-build, from the
//! protos): on output proto field names (`create_revision`, `peerURLs`), 64-bit integers as
//! strings, bytes as base64, enums by name, default values left out; on input either field-name
//! spelling, integers as numbers or strings, unknown fields ignored. As grpc-gateway reads a
//! unary body: an empty body is the empty request, and whatever follows the first JSON value is
//! ignored.
//!
//! # Answers (checked against etcd 3.4.23; `tests/tests/gateway.rs` compares the two)
//!
//! - success: `200`, the response message's JSON;
//! - a gRPC error: `{"error": msg, "message": msg, "code": grpc_code}` (empty fields left out)
//!   with the HTTP status grpc-gateway v1 maps the code to ([`http_status`]; e.g.
//!   InvalidArgument and OutOfRange 400, NotFound 404, FailedPrecondition 412, Unimplemented
//!   501, Unavailable 503);
//! - a body that is not the request's JSON: InvalidArgument (400), the decoder's message;
//! - a stream (`/v3/watch`, `/v3/lease/keepalive`, `/v3/election/observe`,
//!   `/v3/maintenance/snapshot`): one `{"result": message}` line per response, chunked and
//!   flushed as it comes; an error ends it with `{"error": {"grpc_code", "http_code",
//!   "message", "http_status"}}` (no newline), and when nothing was written before, the HTTP
//!   status is the error's. The request body of Watch and LeaseKeepAlive is a stream of JSON
//!   values, each one a request, sent as it arrives; a first value that does not decode is
//!   grpc-gateway's `Unknown` (500), a later one ends the request stream;
//! - another method on a gateway path: `405 Method Not Allowed`; an unknown path under `/v3/`:
//!   `404 Not Found` (text, as grpc-gateway's mux).
//!
//! etcd 3.4 also serves every path under the deprecated `/v3beta/` prefix: so does detcd.
//! `/v3alpha/` (etcd 3.3) is not served, as in 3.4.
//!
//! # The Watch stream outlives its request body
//!
//! grpc-gateway closes the sending side of the Watch stream when the request body ends, and
//! etcd's watch server goes on sending events after that (`curl -d '{"create_request": ...}'`
//! watches until the client hangs up). detcd's Watch service ends the stream when the client
//! closes its side, so the gateway keeps the sending side of a Watch open until the HTTP
//! client goes away or the stream ends. LeaseKeepAlive's sending side is closed at the end of
//! the body, as in etcd: the stream ends once every keepalive in the body was answered.
//!
//! # Bounds
//!
//! - one JSON request (a unary body, or one value of a streamed body) may take
//!   [`json_request_bytes_max`] bytes: twice the gRPC receive limit (`--max-request-bytes` plus
//!   [`limits::GRPC_OVERHEAD_BYTES`]), because base64 makes bytes a third longer and JSON adds
//!   names and punctuation; the decoded request then meets the gRPC service's own limits, so a
//!   request gets the answer etcd gives it ("etcdserver: request is too large" and so on). A
//!   larger body is refused with ResourceExhausted (429) before it is read to the end.
//! - a stream's responses wait in a buffer of [`STREAM_CHUNKS_BUFFERED`] chunks for the HTTP
//!   client; a slow client slows only its own stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use detcd_engine::limits;
use detcd_proto::etcdserverpb::*;
use detcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse, ResignRequest,
    ResignResponse,
};
use detcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::codec::Streaming;
use tonic::service::Routes;

use crate::metrics::grpc_layer::GrpcMetrics;

/// How many stream chunks (one JSON line each) wait for a slow HTTP client before the stream
/// stops reading from gRPC.
pub const STREAM_CHUNKS_BUFFERED: usize = 16;

/// The largest JSON request the gateway reads: see the module's bounds.
pub fn json_request_bytes_max(max_request_bytes: usize) -> usize {
    2 * (max_request_bytes + limits::GRPC_OVERHEAD_BYTES)
}

/// The member's gRPC services, called in process (see the module docs).
type Services = GrpcMetrics<Routes>;

/// The JSON gateway of one member: cheap to clone, one per connection.
#[derive(Clone)]
pub struct Gateway {
    services: Services,
    json_request_bytes_max: usize,
}

/// Whether `path` belongs to the gateway (`/v3/...`, or the deprecated `/v3beta/...`).
pub fn serves(path: &str) -> bool {
    path.starts_with("/v3/") || path.starts_with("/v3beta/")
}

/// The gateway's routes, from etcd's `google.api.http` annotations (rpc.proto, v3lock.proto,
/// v3election.proto): the HTTP path(s), how the call streams, the gRPC method, the message
/// types. Defines [`known`] and `Gateway::call`.
macro_rules! routes {
    ($($($path:literal)|+ => $how:ident($method:literal, $req:ty, $resp:ty $(, $keep_open:expr)?);)+) => {
        /// Whether `path` (under `/v3/`) is a gateway route.
        fn known(path: &str) -> bool {
            matches!(path, $($($path)|+)|+)
        }

        impl Gateway {
            async fn call(&self, path: &str, body: Incoming, token: Option<String>) -> Response<Body> {
                match path {
                    $($($path)|+ => self.$how::<$req, $resp>($method, body, token $(, $keep_open)?).await,)+
                    _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
                }
            }
        }

        #[cfg(test)]
        const PATHS: &[&str] = &[$($($path),+),+];
    };
}

routes! {
    "/v3/kv/range" => unary("/etcdserverpb.KV/Range", RangeRequest, RangeResponse);
    "/v3/kv/put" => unary("/etcdserverpb.KV/Put", PutRequest, PutResponse);
    "/v3/kv/deleterange" => unary("/etcdserverpb.KV/DeleteRange", DeleteRangeRequest, DeleteRangeResponse);
    "/v3/kv/txn" => unary("/etcdserverpb.KV/Txn", TxnRequest, TxnResponse);
    "/v3/kv/compaction" => unary("/etcdserverpb.KV/Compact", CompactionRequest, CompactionResponse);
    // etcd's watch outlives the end of the request body: keep the sending side open.
    "/v3/watch" => bidi("/etcdserverpb.Watch/Watch", WatchRequest, WatchResponse, true);
    "/v3/lease/grant" => unary("/etcdserverpb.Lease/LeaseGrant", LeaseGrantRequest, LeaseGrantResponse);
    "/v3/lease/revoke" | "/v3/kv/lease/revoke" =>
        unary("/etcdserverpb.Lease/LeaseRevoke", LeaseRevokeRequest, LeaseRevokeResponse);
    "/v3/lease/keepalive" =>
        bidi("/etcdserverpb.Lease/LeaseKeepAlive", LeaseKeepAliveRequest, LeaseKeepAliveResponse, false);
    "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" =>
        unary("/etcdserverpb.Lease/LeaseTimeToLive", LeaseTimeToLiveRequest, LeaseTimeToLiveResponse);
    "/v3/lease/leases" | "/v3/kv/lease/leases" =>
        unary("/etcdserverpb.Lease/LeaseLeases", LeaseLeasesRequest, LeaseLeasesResponse);
    "/v3/cluster/member/add" => unary("/etcdserverpb.Cluster/MemberAdd", MemberAddRequest, MemberAddResponse);
    "/v3/cluster/member/remove" =>
        unary("/etcdserverpb.Cluster/MemberRemove", MemberRemoveRequest, MemberRemoveResponse);
    "/v3/cluster/member/update" =>
        unary("/etcdserverpb.Cluster/MemberUpdate", MemberUpdateRequest, MemberUpdateResponse);
    "/v3/cluster/member/list" => unary("/etcdserverpb.Cluster/MemberList", MemberListRequest, MemberListResponse);
    "/v3/cluster/member/promote" =>
        unary("/etcdserverpb.Cluster/MemberPromote", MemberPromoteRequest, MemberPromoteResponse);
    "/v3/maintenance/alarm" => unary("/etcdserverpb.Maintenance/Alarm", AlarmRequest, AlarmResponse);
    "/v3/maintenance/status" => unary("/etcdserverpb.Maintenance/Status", StatusRequest, StatusResponse);
    "/v3/maintenance/defragment" =>
        unary("/etcdserverpb.Maintenance/Defragment", DefragmentRequest, DefragmentResponse);
    "/v3/maintenance/hash" => unary("/etcdserverpb.Maintenance/Hash", HashRequest, HashResponse);
    "/v3/maintenance/hashkv" => unary("/etcdserverpb.Maintenance/HashKV", HashKvRequest, HashKvResponse);
    "/v3/maintenance/snapshot" =>
        server_stream("/etcdserverpb.Maintenance/Snapshot", SnapshotRequest, SnapshotResponse);
    "/v3/maintenance/transfer-leadership" =>
        unary("/etcdserverpb.Maintenance/MoveLeader", MoveLeaderRequest, MoveLeaderResponse);
    "/v3/maintenance/downgrade" =>
        unary("/etcdserverpb.Maintenance/Downgrade", DowngradeRequest, DowngradeResponse);
    "/v3/auth/enable" => unary("/etcdserverpb.Auth/AuthEnable", AuthEnableRequest, AuthEnableResponse);
    "/v3/auth/disable" => unary("/etcdserverpb.Auth/AuthDisable", AuthDisableRequest, AuthDisableResponse);
    "/v3/auth/status" => unary("/etcdserverpb.Auth/AuthStatus", AuthStatusRequest, AuthStatusResponse);
    "/v3/auth/authenticate" =>
        unary("/etcdserverpb.Auth/Authenticate", AuthenticateRequest, AuthenticateResponse);
    "/v3/auth/user/add" => unary("/etcdserverpb.Auth/UserAdd", AuthUserAddRequest, AuthUserAddResponse);
    "/v3/auth/user/get" => unary("/etcdserverpb.Auth/UserGet", AuthUserGetRequest, AuthUserGetResponse);
    "/v3/auth/user/list" => unary("/etcdserverpb.Auth/UserList", AuthUserListRequest, AuthUserListResponse);
    "/v3/auth/user/delete" =>
        unary("/etcdserverpb.Auth/UserDelete", AuthUserDeleteRequest, AuthUserDeleteResponse);
    "/v3/auth/user/changepw" => unary(
        "/etcdserverpb.Auth/UserChangePassword",
        AuthUserChangePasswordRequest,
        AuthUserChangePasswordResponse
    );
    "/v3/auth/user/grant" =>
        unary("/etcdserverpb.Auth/UserGrantRole", AuthUserGrantRoleRequest, AuthUserGrantRoleResponse);
    "/v3/auth/user/revoke" =>
        unary("/etcdserverpb.Auth/UserRevokeRole", AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse);
    "/v3/auth/role/add" => unary("/etcdserverpb.Auth/RoleAdd", AuthRoleAddRequest, AuthRoleAddResponse);
    "/v3/auth/role/get" => unary("/etcdserverpb.Auth/RoleGet", AuthRoleGetRequest, AuthRoleGetResponse);
    "/v3/auth/role/list" => unary("/etcdserverpb.Auth/RoleList", AuthRoleListRequest, AuthRoleListResponse);
    "/v3/auth/role/delete" =>
        unary("/etcdserverpb.Auth/RoleDelete", AuthRoleDeleteRequest, AuthRoleDeleteResponse);
    "/v3/auth/role/grant" => unary(
        "/etcdserverpb.Auth/RoleGrantPermission",
        AuthRoleGrantPermissionRequest,
        AuthRoleGrantPermissionResponse
    );
    "/v3/auth/role/revoke" => unary(
        "/etcdserverpb.Auth/RoleRevokePermission",
        AuthRoleRevokePermissionRequest,
        AuthRoleRevokePermissionResponse
    );
    "/v3/lock/lock" => unary("/v3lockpb.Lock/Lock", LockRequest, LockResponse);
    "/v3/lock/unlock" => unary("/v3lockpb.Lock/Unlock", UnlockRequest, UnlockResponse);
    "/v3/election/campaign" => unary("/v3electionpb.Election/Campaign", CampaignRequest, CampaignResponse);
    "/v3/election/proclaim" => unary("/v3electionpb.Election/Proclaim", ProclaimRequest, ProclaimResponse);
    "/v3/election/leader" => unary("/v3electionpb.Election/Leader", LeaderRequest, LeaderResponse);
    "/v3/election/observe" => server_stream("/v3electionpb.Election/Observe", LeaderRequest, LeaderResponse);
    "/v3/election/resign" => unary("/v3electionpb.Election/Resign", ResignRequest, ResignResponse);
}

impl Gateway {
    /// A gateway calling `routes` (the member's gRPC services) through the metrics layer.
    pub fn new(routes: Routes, metrics: std::sync::Arc<crate::metrics::Metrics>, max_request_bytes: usize) -> Gateway {
        use tower_layer::Layer;
        let services = crate::metrics::grpc_layer::GrpcMetricsLayer(metrics).layer(routes);
        Gateway { services, json_request_bytes_max: json_request_bytes_max(max_request_bytes) }
    }

    /// Answers one request whose path [`serves`] accepted.
    pub async fn serve(&self, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path();
        let path = match path.strip_prefix("/v3beta/") {
            Some(rest) => format!("/v3/{rest}"),
            None => path.to_string(),
        };
        if !known(&path) {
            return text(StatusCode::NOT_FOUND, "Not Found\n");
        }
        if request.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
        }
        // grpc-gateway passes the `Authorization` header on as gRPC metadata `authorization`,
        // which etcd (and detcd) reads as the auth token.
        let token = request.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.call(&path, request.into_body(), token).await
    }

    fn client(&self) -> tonic::client::Grpc<Services> {
        tonic::client::Grpc::new(self.services.clone())
            // The services enforce their own receive limits; what they answer, the gateway
            // passes on whole, as etcd's gateway (whose client has no limit) does.
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    async fn unary<Req, Resp>(&self, method: &'static str, body: Incoming, token: Option<String>) -> Response<Body>
    where
        Req: prost::Message + Default + DeserializeOwned + Send + Sync + 'static,
        Resp: prost::Message + Default + Serialize + Send + Sync + 'static,
    {
        let request = match self.read_request::<Req>(body).await {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        let mut grpc = self.client();
        let _ = grpc.ready().await;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = http::uri::PathAndQuery::from_static(method);
        match grpc.unary(with_token(tonic::Request::new(request), token), path, codec).await {
            Ok(response) => json_reply(StatusCode::OK, to_json(response.get_ref())),
            Err(status) => error_reply(&status),
        }
    }

    async fn server_stream<Req, Resp>(
        &self,
        method: &'static str,
        body: Incoming,
        token: Option<String>,
    ) -> Response<Body>
    where
        Req: prost::Message + Default + DeserializeOwned + Send + Sync + 'static,
        Resp: prost::Message + Default + Serialize + Send + Sync + 'static,
    {
        let request = match self.read_request::<Req>(body).await {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        let mut grpc = self.client();
        let _ = grpc.ready().await;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = http::uri::PathAndQuery::from_static(method);
        match grpc.server_streaming(with_token(tonic::Request::new(request), token), path, codec).await {
            Ok(responses) => {
                let (out, chunks) = mpsc::channel(STREAM_CHUNKS_BUFFERED);
                tokio::task::spawn(pump(responses.into_inner(), RequestSide::<Req>::closed(), out));
                stream_reply(chunks).await
            }
            Err(status) => error_reply(&status),
        }
    }

    async fn bidi<Req, Resp>(
        &self,
        method: &'static str,
        mut body: Incoming,
        token: Option<String>,
        keep_open: bool,
    ) -> Response<Body>
    where
        Req: prost::Message + Default + DeserializeOwned + Send + Sync + 'static,
        Resp: prost::Message + Default + Serialize + Send + Sync + 'static,
    {
        // As grpc-gateway: the first request is decoded before the call; one that does not
        // decode is answered as an error of code Unknown (the decoder's error is no status).
        let mut values = JsonValues::new(self.json_request_bytes_max);
        let mut ended = false;
        let first = loop {
            match values.next::<Req>(ended) {
                Ok(Some(request)) => break Some(request),
                Ok(None) if ended => break None,
                Ok(None) => match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            values.push(&data);
                        }
                    }
                    Some(Err(_)) => return error_reply(&tonic::Status::unknown("unexpected EOF")),
                    None => ended = true,
                },
                Err(e) => return error_reply(&e.into_status(tonic::Code::Unknown)),
            }
        };
        let (requests_tx, requests_rx) = mpsc::channel::<Req>(1);
        if let Some(first) = first {
            let _ = requests_tx.try_send(first);
        }
        let mut grpc = self.client();
        let _ = grpc.ready().await;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let path = http::uri::PathAndQuery::from_static(method);
        let requests_stream = tokio_stream::wrappers::ReceiverStream::new(requests_rx);
        match grpc.streaming(with_token(tonic::Request::new(requests_stream), token), path, codec).await {
            Ok(responses) => {
                let sending = RequestSide {
                    body: (!ended).then_some(body),
                    values,
                    pending: VecDeque::new(),
                    // An empty body closes the sending side at once (unless kept open).
                    tx: (!ended || keep_open).then_some(requests_tx),
                    keep_open,
                };
                let (out, chunks) = mpsc::channel(STREAM_CHUNKS_BUFFERED);
                tokio::task::spawn(pump(responses.into_inner(), sending, out));
                stream_reply(chunks).await
            }
            Err(status) => error_reply(&status),
        }
    }

    /// A unary (or server-streaming) request from the whole body: its first JSON value, or the
    /// empty request for an empty body; InvalidArgument when it does not decode.
    async fn read_request<Req: DeserializeOwned + Default>(&self, mut body: Incoming) -> Result<Req, Response<Body>> {
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Err(error_reply(&tonic::Status::invalid_argument("unexpected EOF")));
            };
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.json_request_bytes_max {
                    return Err(error_reply(&too_large(self.json_request_bytes_max)));
                }
                buf.extend_from_slice(&data);
            }
        }
        let mut values = JsonValues::new(self.json_request_bytes_max);
        values.push(&buf);
        match values.next::<Req>(true) {
            Ok(request) => Ok(request.unwrap_or_default()),
            Err(e) => Err(error_reply(&e.into_status(tonic::Code::InvalidArgument))),
        }
    }
}

fn too_large(max: usize) -> tonic::Status {
    tonic::Status::resource_exhausted(format!("detcd: JSON request larger than the gateway's {max} bytes"))
}

/// A JSON value that could not be taken from a body.
enum JsonError {
    Malformed(String),
    TooLarge(usize),
}

impl JsonError {
    fn into_status(self, code: tonic::Code) -> tonic::Status {
        match self {
            JsonError::Malformed(message) => tonic::Status::new(code, message),
            JsonError::TooLarge(max) => too_large(max),
        }
    }
}

/// The JSON values of a body that arrives in pieces (grpc-gateway's `json.Decoder` over the
/// body: values one after another, whitespace between them).
struct JsonValues {
    buf: BytesMut,
    max: usize,
    /// The buffer may hold a whole value: something arrived since the last failed attempt.
    fresh: bool,
}

impl JsonValues {
    fn new(max: usize) -> JsonValues {
        JsonValues { buf: BytesMut::new(), max, fresh: false }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.fresh = true;
    }

    /// The next whole value, if the buffer holds one. `ended`: no more will arrive, so a
    /// partial value is an error (Go's "unexpected EOF").
    fn next<M: DeserializeOwned>(&mut self, ended: bool) -> Result<Option<M>, JsonError> {
        if !self.fresh && !ended {
            return Ok(None);
        }
        let mut values = serde_json::Deserializer::from_slice(&self.buf).into_iter::<M>();
        match values.next() {
            None => {
                self.buf.clear();
                Ok(None)
            }
            Some(Ok(value)) => {
                let used = values.byte_offset();
                self.buf.advance(used);
                Ok(Some(value))
            }
            Some(Err(e)) if e.is_eof() && !ended => {
                self.fresh = false;
                if self.buf.len() > self.max {
                    return Err(JsonError::TooLarge(self.max));
                }
                Ok(None)
            }
            Some(Err(e)) if e.is_eof() => Err(JsonError::Malformed("unexpected EOF".into())),
            Some(Err(e)) => Err(JsonError::Malformed(e.to_string())),
        }
    }
}

/// The sending side of a bidirectional stream: the rest of the HTTP body, decoded request by
/// request and sent on.
struct RequestSide<Req> {
    /// `None` once the body ended (or broke).
    body: Option<Incoming>,
    values: JsonValues,
    /// Decoded, not yet sent (one at most: the body is not read while one waits).
    pending: VecDeque<Req>,
    /// `None` once the sending side is closed.
    tx: Option<mpsc::Sender<Req>>,
    keep_open: bool,
}

impl<Req> RequestSide<Req> {
    /// A server stream's: nothing to send.
    fn closed() -> RequestSide<Req> {
        RequestSide { body: None, values: JsonValues::new(0), pending: VecDeque::new(), tx: None, keep_open: false }
    }

    /// The body ended or broke: close the sending side, unless it is kept open.
    fn end_of_body(&mut self) {
        self.body = None;
        if !self.keep_open && self.pending.is_empty() {
            self.tx = None;
        }
    }
}

async fn next_frame(body: &mut Option<Incoming>) -> Option<Result<Frame<Bytes>, hyper::Error>> {
    match body {
        Some(body) => body.frame().await,
        None => std::future::pending().await,
    }
}

async fn reserve<T>(tx: Option<mpsc::Sender<T>>) -> Result<mpsc::OwnedPermit<T>, ()> {
    match tx {
        Some(tx) => tx.reserve_owned().await.map_err(|_| ()),
        None => std::future::pending().await,
    }
}

/// One stream's life: responses from gRPC become `{"result": ...}` lines in `out`, and (for a
/// bidirectional stream) the body's requests go to gRPC, until the stream ends, fails, or the
/// HTTP client goes away (`out` closed). Dropping everything at the end closes the gRPC call.
async fn pump<Req, Resp>(mut responses: Streaming<Resp>, mut sending: RequestSide<Req>, out: mpsc::Sender<Chunk>)
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let why = pump_until_done(&mut responses, &mut sending, &out).await;
    tracing::debug!(why, "a gateway stream ended");
}

async fn pump_until_done<Req, Resp>(
    responses: &mut Streaming<Resp>,
    sending: &mut RequestSide<Req>,
    out: &mpsc::Sender<Chunk>,
) -> &'static str
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    loop {
        let pending = !sending.pending.is_empty();
        tokio::select! {
            _ = out.closed() => return "the HTTP client went away",
            // The body is read only while no decoded request waits to be sent.
            frame = next_frame(&mut sending.body), if !pending => {
                match frame {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            sending.values.push(&data);
                        }
                        match sending.values.next::<Req>(false) {
                            Ok(Some(request)) => sending.pending.push_back(request),
                            Ok(None) => {}
                            // grpc-gateway stops sending at a value that does not decode.
                            Err(_) => sending.end_of_body(),
                        }
                    }
                    None => {
                        if let Ok(Some(request)) = sending.values.next::<Req>(true) {
                            sending.pending.push_back(request);
                        }
                        sending.end_of_body();
                    }
                    Some(Err(_)) => sending.end_of_body(),
                }
            }
            permit = reserve(sending.tx.clone()), if pending => match permit {
                Ok(permit) => {
                    permit.send(sending.pending.pop_front().expect("a pending request"));
                    // More whole values may be buffered already.
                    let ended = sending.body.is_none();
                    if let Ok(Some(request)) = sending.values.next::<Req>(ended) {
                        sending.pending.push_back(request);
                    }
                    if ended {
                        sending.end_of_body();
                    }
                }
                // The call takes no more requests; its responses say why.
                Err(()) => {
                    sending.pending.clear();
                    sending.body = None;
                    sending.tx = None;
                }
            },
            message = responses.message() => match message {
                Ok(Some(response)) => {
                    let mut line = Vec::with_capacity(256);
                    line.extend_from_slice(b"{\"result\":");
                    serde_json::to_writer(&mut line, &response).expect("a message serializes");
                    line.extend_from_slice(b"}\n");
                    if out.send(Chunk::Result(line.into())).await.is_err() {
                        return "the HTTP client went away";
                    }
                }
                Ok(None) => return "the gRPC stream ended",
                Err(status) => {
                    let _ = out.send(Chunk::Error(http_status(status.code()), stream_error(&status))).await;
                    return "the gRPC stream failed";
                }
            },
        }
    }
}

/// One piece of a streamed answer.
pub enum Chunk {
    Result(Bytes),
    /// The stream's last chunk; the status is the answer's when nothing came before it.
    Error(StatusCode, Bytes),
}

/// The request with the HTTP `Authorization` header as metadata `authorization`.
fn with_token<T>(mut request: tonic::Request<T>, token: Option<String>) -> tonic::Request<T> {
    if let Some(value) = token.and_then(|t| t.parse().ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// The answer to a stream: waits for its first chunk (as grpc-gateway writes no header before
/// its first chunk), then streams the rest.
async fn stream_reply(mut chunks: mpsc::Receiver<Chunk>) -> Response<Body> {
    let (status, first) = match chunks.recv().await {
        None => (StatusCode::OK, None),
        Some(Chunk::Result(line)) => (StatusCode::OK, Some(line)),
        Some(Chunk::Error(status, line)) => (status, Some(line)),
    };
    let mut response = Response::new(Body::Stream { first, chunks: Some(chunks) });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// grpc-gateway v1's `HTTPStatusFromCode` (the version etcd 3.4 uses: FailedPrecondition is
/// 412 there, 400 in v2).
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code::*;
    match code {
        Ok => StatusCode::OK,
        Cancelled => StatusCode::REQUEST_TIMEOUT,
        Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        InvalidArgument => StatusCode::BAD_REQUEST,
        DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        NotFound => StatusCode::NOT_FOUND,
        AlreadyExists => StatusCode::CONFLICT,
        PermissionDenied => StatusCode::FORBIDDEN,
        Unauthenticated => StatusCode::UNAUTHORIZED,
        ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Aborted => StatusCode::CONFLICT,
        OutOfRange => StatusCode::BAD_REQUEST,
        Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's unary error body: `{"error", "message", "code"}`, empty fields left out (as
/// jsonpb writes its `errorBody` message).
fn error_reply(status: &tonic::Status) -> Response<Body> {
    // In the order jsonpb writes them (serde_json's maps would sort them).
    let mut fields = Vec::new();
    if !status.message().is_empty() {
        let message = json_string(status.message());
        fields.push(format!(r#""error":{message}"#));
        fields.push(format!(r#""message":{message}"#));
    }
    if status.code() != tonic::Code::Ok {
        fields.push(format!(r#""code":{}"#, status.code() as i32));
    }
    let body = format!("{{{}}}", fields.join(","));
    let mut response = json_reply(http_status(status.code()), body.into());
    response.headers_mut().remove("grpc-metadata-content-type");
    response
}

/// grpc-gateway's last chunk of a failed stream (its `StreamError` message in jsonpb).
fn stream_error(status: &tonic::Status) -> Bytes {
    let http = http_status(status.code());
    let mut fields =
        vec![format!(r#""grpc_code":{}"#, status.code() as i32), format!(r#""http_code":{}"#, http.as_u16())];
    if !status.message().is_empty() {
        fields.push(format!(r#""message":{}"#, json_string(status.message())));
    }
    fields.push(format!(r#""http_status":{}"#, json_string(http.canonical_reason().unwrap_or(""))));
    format!(r#"{{"error":{{{}}}}}"#, fields.join(",")).into()
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn to_json<M: Serialize>(message: &M) -> Bytes {
    serde_json::to_vec(message).expect("a message serializes").into()
}

fn json_reply(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::Full(Some(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert("grpc-metadata-content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// A plain-text answer (Go's `http.Error`).
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Full(Some(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

/// The body of every answer on the client port's HTTP/1.1 side: whole, or streamed chunk by
/// chunk (hyper sends it chunked, each chunk as it comes).
pub enum Body {
    Full(Option<Bytes>),
    Stream { first: Option<Bytes>, chunks: Option<mpsc::Receiver<Chunk>> },
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Body::Stream { first, chunks } => {
                if let Some(first) = first.take() {
                    return Poll::Ready(Some(Ok(Frame::data(first))));
                }
                let Some(rx) = chunks else { return Poll::Ready(None) };
                match rx.poll_recv(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(None) => {
                        *chunks = None;
                        Poll::Ready(None)
                    }
                    Poll::Ready(Some(Chunk::Result(line))) => Poll::Ready(Some(Ok(Frame::data(line)))),
                    Poll::Ready(Some(Chunk::Error(_, line))) => {
                        *chunks = None;
                        Poll::Ready(Some(Ok(Frame::data(line))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(Some(data)) => hyper::body::SizeHint::with_exact(data.len() as u64),
            Body::Full(None) => hyper::body::SizeHint::with_exact(0),
            Body::Stream { .. } => hyper::body::SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_come_one_at_a_time_across_pieces() {
        let mut values = JsonValues::new(1024);
        values.push(br#" {"ID": "7"} {"ID""#);
        let first: LeaseKeepAliveRequest = values.next(false).ok().flatten().expect("a whole value");
        assert_eq!(first.id, 7);
        assert!(matches!(values.next::<LeaseKeepAliveRequest>(false), Ok(None)), "the second is partial");
        values.push(b": 8}\n");
        let second: LeaseKeepAliveRequest = values.next(false).ok().flatten().expect("now whole");
        assert_eq!(second.id, 8);
        assert!(matches!(values.next::<LeaseKeepAliveRequest>(true), Ok(None)), "whitespace is no value");
        values.push(br#"{"ID": "#);
        assert!(matches!(values.next::<LeaseKeepAliveRequest>(true), Err(JsonError::Malformed(_))));
    }

    #[test]
    fn a_partial_value_larger_than_the_bound_is_refused() {
        let mut values = JsonValues::new(16);
        values.push(br#"{"key": "AAAAAAAAAAAAAAAAAAAAAAAA"#);
        assert!(matches!(values.next::<RangeRequest>(false), Err(JsonError::TooLarge(16))));
    }

    #[test]
    fn the_json_mapping_is_grpc_gateways() {
        let request: RangeRequest = serde_json::from_str(
            r#"{"key": "Zm9v", "rangeEnd": "Zm9w", "limit": 5, "revision": "3", "sort_order": "DESCEND", "x": 1}"#,
        )
        .expect("both spellings, numbers and strings, enum names, unknown fields");
        assert_eq!(
            (&request.key[..], &request.range_end[..], request.limit, request.revision),
            (&b"foo"[..], &b"fop"[..], 5, 3)
        );
        assert_eq!(request.sort_order, range_request::SortOrder::Descend as i32);
        let response = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: u64::MAX, revision: 2, raft_term: 0 }),
            kvs: vec![detcd_proto::mvccpb::KeyValue { key: "foo".into(), create_revision: 2, ..Default::default() }],
            count: 1,
            more: false,
        };
        assert_eq!(
            String::from_utf8(to_json(&response).to_vec()).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"18446744073709551615","revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2"}],"count":"1"}"#
        );
        let member = Member { id: 1, peer_ur_ls: vec!["http://a".into()], ..Default::default() };
        assert_eq!(String::from_utf8(to_json(&member).to_vec()).unwrap(), r#"{"ID":"1","peerURLs":["http://a"]}"#);
    }

    #[test]
    fn errors_have_grpc_gateways_shapes() {
        let status = tonic::Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        let reply = error_reply(&status);
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
        let Body::Full(Some(body)) = reply.into_body() else { panic!("a whole body") };
        assert_eq!(
            &body[..],
            br#"{"error":"etcdserver: mvcc: required revision has been compacted","message":"etcdserver: mvcc: required revision has been compacted","code":11}"#
        );
        assert_eq!(
            &stream_error(&tonic::Status::failed_precondition("x"))[..],
            br#"{"error":{"grpc_code":9,"http_code":412,"message":"x","http_status":"Precondition Failed"}}"#
        );
        assert_eq!(&error_reply(&tonic::Status::unimplemented("")).into_body_bytes()[..], br#"{"code":12}"#);
    }

    trait IntoBodyBytes {
        fn into_body_bytes(self) -> Bytes;
    }

    impl IntoBodyBytes for Response<Body> {
        fn into_body_bytes(self) -> Bytes {
            match self.into_body() {
                Body::Full(Some(body)) => body,
                _ => panic!("a whole body"),
            }
        }
    }

    #[test]
    fn every_path_of_etcds_annotations_is_a_route() {
        for path in ETCD_PATHS {
            assert!(known(path), "{path}");
        }
        assert_eq!(PATHS.len(), ETCD_PATHS.len(), "no route etcd does not have");
        assert!(!known("/v3/kv/nothing"));
    }

    /// Every path etcd's annotations name (and the aliases).
    const ETCD_PATHS: &[&str] = &[
        "/v3/kv/range",
        "/v3/kv/put",
        "/v3/kv/deleterange",
        "/v3/kv/txn",
        "/v3/kv/compaction",
        "/v3/watch",
        "/v3/lease/grant",
        "/v3/lease/revoke",
        "/v3/kv/lease/revoke",
        "/v3/lease/keepalive",
        "/v3/lease/timetolive",
        "/v3/kv/lease/timetolive",
        "/v3/lease/leases",
        "/v3/kv/lease/leases",
        "/v3/cluster/member/add",
        "/v3/cluster/member/remove",
        "/v3/cluster/member/update",
        "/v3/cluster/member/list",
        "/v3/cluster/member/promote",
        "/v3/maintenance/alarm",
        "/v3/maintenance/status",
        "/v3/maintenance/defragment",
        "/v3/maintenance/hash",
        "/v3/maintenance/hashkv",
        "/v3/maintenance/snapshot",
        "/v3/maintenance/transfer-leadership",
        "/v3/maintenance/downgrade",
        "/v3/auth/enable",
        "/v3/auth/disable",
        "/v3/auth/status",
        "/v3/auth/authenticate",
        "/v3/auth/user/add",
        "/v3/auth/user/get",
        "/v3/auth/user/list",
        "/v3/auth/user/delete",
        "/v3/auth/user/changepw",
        "/v3/auth/user/grant",
        "/v3/auth/user/revoke",
        "/v3/auth/role/add",
        "/v3/auth/role/get",
        "/v3/auth/role/list",
        "/v3/auth/role/delete",
        "/v3/auth/role/grant",
        "/v3/auth/role/revoke",
        "/v3/lock/lock",
        "/v3/lock/unlock",
        "/v3/election/campaign",
        "/v3/election/proclaim",
        "/v3/election/leader",
        "/v3/election/observe",
        "/v3/election/resign",
    ];
}
