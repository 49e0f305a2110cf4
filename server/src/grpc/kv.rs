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

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: GrpcRequest<RangeRequest>) -> Result<GrpcResponse<RangeResponse>, Status> {
        if req.get_ref().serializable {
            // A learner serves serializable reads from its own (possibly stale) store.
            return call_node_unchecked!(self, req, Range);
        }
        call_node!(self, req, Range)
    }

    async fn put(&self, req: GrpcRequest<PutRequest>) -> Result<GrpcResponse<PutResponse>, Status> {
        call_node!(self, req, Put)
    }

    async fn delete_range(
        &self,
        req: GrpcRequest<DeleteRangeRequest>,
    ) -> Result<GrpcResponse<DeleteRangeResponse>, Status> {
        call_node!(self, req, DeleteRange)
    }

    async fn txn(&self, req: GrpcRequest<TxnRequest>) -> Result<GrpcResponse<TxnResponse>, Status> {
        call_node!(self, req, Txn)
    }

    async fn compact(&self, req: GrpcRequest<CompactionRequest>) -> Result<GrpcResponse<CompactionResponse>, Status> {
        call_node!(self, req, Compact)
    }
}
