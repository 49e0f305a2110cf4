use detcd_engine::node::{Request, Response};
use detcd_proto::etcdserverpb::kv_server::Kv;
use detcd_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::{status, unexpected};
use crate::driver::Handle;

pub struct KvService {
    pub handle: Handle,
}

macro_rules! kv_call {
    ($self:ident, $req:ident, $variant:ident) => {{
        match $self.handle.call(Request::$variant($req.into_inner())).await.map_err(status)? {
            Response::$variant(r) => Ok(GrpcResponse::new(r)),
            other => Err(unexpected(&other)),
        }
    }};
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: GrpcRequest<RangeRequest>) -> Result<GrpcResponse<RangeResponse>, Status> {
        kv_call!(self, req, Range)
    }

    async fn put(&self, req: GrpcRequest<PutRequest>) -> Result<GrpcResponse<PutResponse>, Status> {
        kv_call!(self, req, Put)
    }

    async fn delete_range(
        &self,
        req: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<GrpcResponse<DeleteRangeResponse>, Status> {
        kv_call!(self, req, DeleteRange)
    }

    async fn txn(&self, req: GrpcRequest<TxnRequest>) -> Result<GrpcResponse<TxnResponse>, Status> {
        kv_call!(self, req, Txn)
    }

    async fn compact(&self, req: GrpcRequest<CompactionRequest>) -> Result<GrpcResponse<CompactionResponse>, Status> {
        kv_call!(self, req, Compact)
    }
}
