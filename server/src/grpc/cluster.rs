use detcd_engine::node::{Request, Response};
use detcd_proto::etcdserverpb::cluster_server::Cluster;
use detcd_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::{status, unexpected};
use crate::driver::Handle;

pub struct ClusterService {
    pub handle: Handle,
    pub forwarder: std::sync::Arc<crate::forward::Forwarder>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: GrpcRequest<MemberAddRequest>) -> Result<GrpcResponse<MemberAddResponse>, Status> {
        call_node!(self, req, MemberAdd)
    }

    async fn member_remove(
        &self,
        req: GrpcRequest<MemberRemoveRequest>,
    ) -> Result<GrpcResponse<MemberRemoveResponse>, Status> {
        call_node!(self, req, MemberRemove)
    }

    async fn member_update(
        &self,
        req: GrpcRequest<MemberUpdateRequest>,
    ) -> Result<GrpcResponse<MemberUpdateResponse>, Status> {
        call_node!(self, req, MemberUpdate)
    }

    async fn member_list(
        &self,
        req: GrpcRequest<MemberListRequest>,
    ) -> Result<GrpcResponse<MemberListResponse>, Status> {
        call_node!(self, req, MemberList)
    }

    async fn member_promote(
        &self,
        req: GrpcRequest<MemberPromoteRequest>,
    ) -> Result<GrpcResponse<MemberPromoteResponse>, Status> {
        super::voters_only(&self.handle)?;
        use detcd_proto::peerpb::{forward_request, forward_response};
        let caller = super::caller(&req);
        let request = req.into_inner();
        match self.handle.call_as(caller, Request::MemberPromote(request.clone())).await {
            Ok(Response::MemberPromote(r)) => Ok(GrpcResponse::new(r)),
            Ok(other) => Err(unexpected(&other)),
            // Only the leader knows whether the learner caught up: forward.
            Err(detcd_engine::Error::NotLeader) => {
                match self.forwarder.forward(forward_request::Request::MemberPromote(request)).await? {
                    forward_response::Response::MemberPromote(r) => Ok(GrpcResponse::new(r)),
                    _ => Err(Status::internal("detcd: forwarded promote answered with another kind")),
                }
            }
            Err(e) => Err(status(e)),
        }
    }
}
