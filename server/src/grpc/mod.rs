//! etcd's gRPC services, as thin as etcd's `v3rpc`: check, hand the request to the driver, map
//! errors to etcd's status codes and exact messages. The node fills response headers.

/// Hands a gRPC request to the driver as the node request of the same name, and unwraps the
/// node's answer of that name (another kind of answer is a driver bug: `Internal`). None of these
/// RPCs is served on a learner ([`voters_only`]).
macro_rules! call_node {
    ($self:ident, $req:ident, $variant:ident) => {{
        $crate::grpc::voters_only(&$self.handle)?;
        call_node_unchecked!($self, $req, $variant)
    }};
}

/// [`call_node!`] without the learner check, for the RPCs a learner serves.
macro_rules! call_node_unchecked {
    ($self:ident, $req:ident, $variant:ident) => {{
        let caller = $crate::grpc::caller(&$req);
        match $self
            .handle
            .call_as(caller, detcd_engine::node::Request::$variant($req.into_inner()))
            .await
            .map_err(status)?
        {
            detcd_engine::node::Response::$variant(r) => Ok(tonic::Response::new(r)),
            other => Err(unexpected(&other)),
        }
    }};
}

mod auth;
mod cluster;
mod concurrency;
mod election;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod watch;

use std::pin::Pin;
use std::task::{Context, Poll};

use detcd_engine::node::Response;
use detcd_engine::Error;
use tokio::sync::mpsc;
use tonic::Status;

pub use auth::{AuthOptions, AuthService};
pub use cluster::ClusterService;
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use lock::LockService;
pub use maintenance::{MaintenanceService, ETCD_API_VERSION, ETCD_VERSION};
pub use watch::WatchService;

/// etcd's error as a gRPC status: same code, same message (clients parse the message).
pub fn status(e: Error) -> Status {
    Status::new(tonic::Code::from_i32(e.code() as i32), e.message())
}

/// Refuses an RPC on a learner, as etcd does: a learner serves its clients only `Status`,
/// serializable `Range` and `Snapshot` (see [`crate::driver::Handle::refuse_if_learner`]). Every
/// other client RPC handler, in every service, calls this first.
pub(crate) fn voters_only(handle: &crate::driver::Handle) -> Result<(), Status> {
    handle.refuse_if_learner().map_err(status)
}

/// The auth caller of a client request: its token from gRPC metadata `token` (etcdctl,
/// clientv3) or `authorization` (the JSON gateway, newer clients), as etcd's `AuthInfoFromCtx`.
pub fn caller<T>(req: &tonic::Request<T>) -> detcd_engine::auth::Caller {
    let md = req.metadata();
    let token = md.get("token").or_else(|| md.get("authorization")).and_then(|v| v.to_str().ok());
    detcd_engine::auth::Caller::Client(token.map(str::to_owned))
}

/// etcd's `IsAdminPermitted` for the RPCs served outside the engine (snapshot, hash,
/// defragment): while auth is enabled, only a user with the root role.
pub(crate) async fn admin_only<T>(handle: &crate::driver::Handle, req: &tonic::Request<T>) -> Result<(), Status> {
    if !handle.auth_enabled() {
        return Ok(());
    }
    handle.call_as(caller(req), detcd_engine::node::Request::AuthCheckAdmin).await.map(|_| ()).map_err(status)
}

/// Whether the caller of `req` may read (and, with `write`, write) `[key, range_end)`: the Lock
/// and Election services work on keys as clients of the member, checked here as the caller.
pub(crate) async fn may<T>(
    handle: &crate::driver::Handle,
    req: &tonic::Request<T>,
    key: bytes::Bytes,
    range_end: bytes::Bytes,
    write: bool,
) -> Result<(), Status> {
    if !handle.auth_enabled() {
        return Ok(());
    }
    let check = detcd_engine::node::Request::AuthCheckRange { key, range_end, write };
    handle.call_as(caller(req), check).await.map(|_| ()).map_err(status)
}

/// The status of an answer of the wrong kind: a bug in the driver, never a client's doing.
fn unexpected(response: &Response) -> Status {
    Status::internal(format!("detcd: unexpected response {response:?}"))
}

/// A response stream fed by a channel.
pub struct ChannelStream<T> {
    rx: mpsc::Receiver<Result<T, Status>>,
}

impl<T> ChannelStream<T> {
    pub fn new(rx: mpsc::Receiver<Result<T, Status>>) -> ChannelStream<T> {
        ChannelStream { rx }
    }
}

impl<T> tonic::codegen::tokio_stream::Stream for ChannelStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
