use detcd_engine::node::{Request, Response};
use detcd_engine::Error;
use detcd_proto::etcdserverpb::maintenance_server::Maintenance;
use detcd_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, ResponseHeader,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::{status, unexpected, ChannelStream};
use crate::driver::{Handle, MemberStatus};

/// The etcd version detcd reports: the API it implements.
pub const ETCD_VERSION: &str = "3.5.0";

/// The API version `--version` prints.
pub const ETCD_API_VERSION: &str = "3.5";

/// Bytes per Snapshot response (etcd sends 32 KiB).
const SNAPSHOT_CHUNK_BYTES: usize = 32 * 1024;

pub struct MaintenanceService {
    pub handle: Handle,
    pub forwarder: std::sync::Arc<crate::forward::Forwarder>,
}

pub fn header(s: &MemberStatus) -> ResponseHeader {
    ResponseHeader { cluster_id: s.cluster_id, member_id: s.member_id, revision: s.revision, raft_term: s.term }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: GrpcRequest<AlarmRequest>) -> Result<GrpcResponse<AlarmResponse>, Status> {
        // Every action through raft, as etcd does: a listing is as fresh as a write, and
        // raising or disarming reaches every member.
        call_node!(self, req, Alarm)
    }

    async fn status(&self, _req: GrpcRequest<StatusRequest>) -> Result<GrpcResponse<StatusResponse>, Status> {
        let s = self.handle.status().await.map_err(status)?;
        Ok(GrpcResponse::new(StatusResponse {
            header: Some(header(&s)),
            version: ETCD_VERSION.into(),
            db_size: i64::try_from(s.db_size_bytes).unwrap_or(i64::MAX),
            leader: s.leader_id,
            raft_index: s.commit_index,
            raft_term: s.term,
            raft_applied_index: s.applied_index,
            errors: vec![],
            // No free pages: compaction gives space back at once (see `Store::size_bytes`).
            db_size_in_use: i64::try_from(s.db_size_bytes).unwrap_or(i64::MAX),
            is_learner: s.is_learner,
        }))
    }

    async fn defragment(
        &self,
        req: GrpcRequest<DefragmentRequest>,
    ) -> Result<GrpcResponse<DefragmentResponse>, Status> {
        super::voters_only(&self.handle)?;
        super::admin_only(&self.handle, &req).await?;
        // The store lives in memory and holds no free pages: there is nothing to defragment.
        let s = self.handle.status().await.map_err(status)?;
        Ok(GrpcResponse::new(DefragmentResponse { header: Some(header(&s)) }))
    }

    async fn hash(&self, req: GrpcRequest<HashRequest>) -> Result<GrpcResponse<HashResponse>, Status> {
        super::voters_only(&self.handle)?;
        super::admin_only(&self.handle, &req).await?;
        let s = self.handle.status().await.map_err(status)?;
        // The store's hash is computed only when asked for (it walks the whole store).
        let hash = self.handle.hash_kv(0).await.map_err(status)?;
        Ok(GrpcResponse::new(HashResponse { header: Some(header(&s)), hash: hash.hash }))
    }

    /// The hash of the store's history up to a revision (0: the current one); the header
    /// carries the hashed revision, as etcd's does.
    async fn hash_kv(&self, req: GrpcRequest<HashKvRequest>) -> Result<GrpcResponse<HashKvResponse>, Status> {
        super::voters_only(&self.handle)?;
        super::admin_only(&self.handle, &req).await?;
        let s = self.handle.status().await.map_err(status)?;
        let hash = self.handle.hash_kv(req.get_ref().revision).await.map_err(status)?;
        Ok(GrpcResponse::new(HashKvResponse {
            header: Some(ResponseHeader { revision: hash.hash_revision, ..header(&s) }),
            hash: hash.hash,
            compact_revision: hash.compact_revision,
        }))
    }

    type SnapshotStream = ChannelStream<SnapshotResponse>;

    /// Streams the applied state as detcd's state image, in chunks, framed as etcd frames its
    /// bbolt file so that etcd's clients accept it: zero-padded to a multiple of 512 bytes, then
    /// the SHA-256 of all that. (Only detcd can restore from it.)
    async fn snapshot(&self, req: GrpcRequest<SnapshotRequest>) -> Result<GrpcResponse<Self::SnapshotStream>, Status> {
        use sha2::Digest;
        super::admin_only(&self.handle, &req).await?;
        let mut image = self.handle.snapshot().await.map_err(status)?;
        image.resize(image.len().div_ceil(512) * 512, 0);
        let checksum = sha2::Sha256::digest(&image);
        image.extend_from_slice(&checksum);
        let image = bytes::Bytes::from(image);
        let s = self.handle.status().await.map_err(status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn(async move {
            let mut sent = 0;
            while sent < image.len() {
                let end = (sent + SNAPSHOT_CHUNK_BYTES).min(image.len());
                let chunk = SnapshotResponse {
                    header: Some(header(&s)),
                    remaining_bytes: (image.len() - end) as u64,
                    blob: image.slice(sent..end),
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                sent = end;
            }
        });
        Ok(GrpcResponse::new(ChannelStream::new(rx)))
    }

    async fn move_leader(
        &self,
        req: GrpcRequest<MoveLeaderRequest>,
    ) -> Result<GrpcResponse<MoveLeaderResponse>, Status> {
        super::voters_only(&self.handle)?;
        use detcd_proto::peerpb::{forward_request, forward_response};
        let caller = super::caller(&req);
        let request = req.into_inner();
        match self.handle.call_as(caller, Request::MoveLeader(request.clone())).await {
            Ok(Response::MoveLeader(r)) => Ok(GrpcResponse::new(r)),
            Ok(other) => Err(unexpected(&other)),
            // Only the leader can hand leadership over: forward.
            Err(Error::NotLeader) => match self.forwarder.forward(forward_request::Request::MoveLeader(request)).await?
            {
                forward_response::Response::MoveLeader(r) => Ok(GrpcResponse::new(r)),
                _ => Err(Status::internal("detcd: forwarded move-leader answered with another kind")),
            },
            Err(e) => Err(status(e)),
        }
    }

    async fn downgrade(&self, _req: GrpcRequest<DowngradeRequest>) -> Result<GrpcResponse<DowngradeResponse>, Status> {
        super::voters_only(&self.handle)?;
        Err(Status::unimplemented("detcd: Downgrade is not supported"))
    }
}
