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
use crate::forward::{is, Forwarder};
use detcd_proto::peerpb::{forward_request, forward_response};

pub struct LeaseService {
    pub handle: Handle,
    pub forwarder: std::sync::Arc<Forwarder>,
}

/// Keepalive answers buffered per stream.
const KEEPALIVE_BUFFER: usize = 16;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: GrpcRequest<LeaseGrantRequest>,
    ) -> Result<GrpcResponse<LeaseGrantResponse>, Status> {
        call_node!(self, req, LeaseGrant)
    }

    async fn lease_revoke(
        &self,
        req: GrpcRequest<LeaseRevokeRequest>,
    ) -> Result<GrpcResponse<LeaseRevokeResponse>, Status> {
        call_node!(self, req, LeaseRevoke)
    }

    type LeaseKeepAliveStream = ChannelStream<LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: GrpcRequest<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<GrpcResponse<Self::LeaseKeepAliveStream>, Status> {
        super::voters_only(&self.handle)?;
        let mut requests = req.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_BUFFER);
        let handle = self.handle.clone();
        let forwarder = self.forwarder.clone();
        tokio::task::spawn(async move {
            while let Ok(Some(keepalive)) = requests.message().await {
                let id = keepalive.id;
                let answer = match handle.call(Request::LeaseKeepAlive(keepalive.clone())).await {
                    Ok(Response::LeaseKeepAlive(r)) => Ok(r),
                    Ok(other) => Err(unexpected(&other)),
                    // Only the leader's lease clocks run: forward.
                    Err(Error::NotLeader) => {
                        match forwarder.forward(forward_request::Request::LeaseKeepAlive(keepalive)).await {
                            Ok(forward_response::Response::LeaseKeepAlive(r)) => Ok(r),
                            Ok(_) => Err(Status::internal("detcd: forwarded keepalive answered with another kind")),
                            Err(s) => Err(s),
                        }
                    }
                    Err(e) => Err(status(e)),
                };
                // etcd's v3rpc: an unknown (or expired) lease is answered with TTL 0, and the
                // member's header.
                let answer = match answer {
                    Err(s) if is(&s, Error::LeaseNotFound) => {
                        let header = handle.status().await.ok().map(|s| super::maintenance::header(&s));
                        Ok(LeaseKeepAliveResponse { header, id, ttl: 0 })
                    }
                    other => other,
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
        super::voters_only(&self.handle)?;
        let request = req.into_inner();
        let id = request.id;
        let answer = match self.handle.call(Request::LeaseTimeToLive(request.clone())).await {
            Ok(Response::LeaseTimeToLive(r)) => Ok(r),
            Ok(other) => Err(unexpected(&other)),
            Err(Error::NotLeader) => {
                match self.forwarder.forward(forward_request::Request::LeaseTimeToLive(request)).await {
                    Ok(forward_response::Response::LeaseTimeToLive(r)) => Ok(r),
                    Ok(_) => Err(Status::internal("detcd: forwarded time-to-live answered with another kind")),
                    Err(s) => Err(s),
                }
            }
            Err(e) => Err(status(e)),
        };
        match answer {
            // etcd's v3rpc: an unknown lease is answered with TTL -1, not an error.
            Err(s) if is(&s, Error::LeaseNotFound) => {
                let header = self.handle.status().await.ok().map(|s| crate::grpc::maintenance::header(&s));
                Ok(GrpcResponse::new(LeaseTimeToLiveResponse { header, id, ttl: -1, granted_ttl: 0, keys: vec![] }))
            }
            other => other.map(GrpcResponse::new),
        }
    }

    async fn lease_leases(
        &self,
        req: GrpcRequest<LeaseLeasesRequest>,
    ) -> Result<GrpcResponse<LeaseLeasesResponse>, Status> {
        call_node!(self, req, LeaseLeases)
    }
}
