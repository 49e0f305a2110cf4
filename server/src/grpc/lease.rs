use detcd_engine::node::{Request, Response};
use detcd_engine::Error;
use detcd_proto::etcdserverpb::lease_server::Lease;
use detcd_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use super::{status, unexpected, ChannelStream};
use crate::driver::Handle;

pub struct LeaseService {
    pub handle: Handle,
}

/// Keepalive answers buffered per stream.
const KEEPALIVE_BUFFER: usize = 16;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: GrpcRequest<LeaseGrantRequest>,
    ) -> Result<GrpcResponse<LeaseGrantResponse>, Status> {
        match self.handle.call(Request::LeaseGrant(req.into_inner())).await.map_err(status)? {
            Response::LeaseGrant(r) => Ok(GrpcResponse::new(r)),
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_revoke(
        &self,
        req: GrpcRequest<LeaseRevokeRequest>,
    ) -> Result<GrpcResponse<LeaseRevokeResponse>, Status> {
        match self.handle.call(Request::LeaseRevoke(req.into_inner())).await.map_err(status)? {
            Response::LeaseRevoke(r) => Ok(GrpcResponse::new(r)),
            other => Err(unexpected(&other)),
        }
    }

    type LeaseKeepAliveStream = ChannelStream<LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: GrpcRequest<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<GrpcResponse<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = req.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_BUFFER);
        let handle = self.handle.clone();
        tokio::task::spawn(async move {
            while let Ok(Some(keepalive)) = requests.message().await {
                let id = keepalive.id;
                let answer = match handle.call(Request::LeaseKeepAlive(keepalive)).await {
                    Ok(Response::LeaseKeepAlive(r)) => Ok(r),
                    // etcd's v3rpc: an unknown (or expired) lease is answered with TTL 0.
                    Err(Error::LeaseNotFound) => Ok(LeaseKeepAliveResponse { header: None, id, ttl: 0 }),
                    Ok(other) => Err(unexpected(&other)),
                    Err(e) => Err(status(e)),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(GrpcResponse::new(ChannelStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        req: GrpcRequest<LeaseTimeToLiveRequest>,
    ) -> Result<GrpcResponse<LeaseTimeToLiveResponse>, Status> {
        let id = req.get_ref().id;
        match self.handle.call(Request::LeaseTimeToLive(req.into_inner())).await {
            Ok(Response::LeaseTimeToLive(r)) => Ok(GrpcResponse::new(r)),
            // etcd's v3rpc: an unknown lease is answered with TTL -1, not an error.
            Err(Error::LeaseNotFound) => {
                let header = self.handle.status().await.ok().map(|s| crate::grpc::maintenance::header(&s));
                Ok(GrpcResponse::new(LeaseTimeToLiveResponse { header, id, ttl: -1, granted_ttl: 0, keys: vec![] }))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(status(e)),
        }
    }

    async fn lease_leases(
        &self,
        req: GrpcRequest<LeaseLeasesRequest>,
    ) -> Result<GrpcResponse<LeaseLeasesResponse>, Status> {
        match self.handle.call(Request::LeaseLeases(req.into_inner())).await.map_err(status)? {
            Response::LeaseLeases(r) => Ok(GrpcResponse::new(r)),
            other => Err(unexpected(&other)),
        }
    }
}
