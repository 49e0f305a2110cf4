//! etcd's `v3election` service, with etcd's semantics (etcd serves it with clientv3's
//! `concurrency.Election`; see [`super::concurrency`] for why it is built as a client of the
//! member).
//!
//! A campaign puts `name/<lease id in hex>` with the candidate's value and lease; the leader is
//! the oldest key under `name/`. A candidate waits, without polling, until every older key is
//! gone. A leader is named by its [`LeaderKey`] (key and create revision): Proclaim and Resign
//! act only while that key still has that create revision, so a stale leader cannot speak for
//! a new one.

use bytes::Bytes;
use detcd_engine::limits;
use detcd_engine::node::Request;
use detcd_proto::etcdserverpb::request_op::Request as Op;
use detcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, ResponseHeader, TxnRequest};
use detcd_proto::mvccpb::event::EventType;
use detcd_proto::mvccpb::KeyValue;
use detcd_proto::v3electionpb::election_server::Election;
use detcd_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::concurrency::{
    created_at, failure, first_created, key_prefix, lease_key, op, prefix_end, range, range_kvs, session_lease, txn,
    wait_deletes, HubWatch, Undo,
};
use super::ChannelStream;
use crate::driver::Handle;

/// clientv3's `ErrElectionNotLeader`: the leader key no longer has its create revision.
const NOT_LEADER: &str = "election: not leader";
/// clientv3's `ErrElectionNoLeader`: no key under the election's prefix.
const NO_LEADER: &str = "election: no leader";
/// etcd's `v3election.ErrMissingLeaderKey`: Proclaim or Resign without a leader key.
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

pub struct ElectionService {
    pub handle: Handle,
}

/// Puts `value` on the leader's key while the key still has the leader's create revision.
async fn proclaim(
    handle: &Handle,
    key: &Bytes,
    revision: i64,
    lease: i64,
    value: Bytes,
) -> Result<Option<ResponseHeader>, Status> {
    let put = PutRequest { key: key.clone(), value, lease, ..Default::default() };
    let proclaimed = txn(
        handle,
        TxnRequest {
            compare: vec![created_at(key, revision)],
            success: vec![op(Op::RequestPut(put))],
            failure: vec![],
        },
    )
    .await?;
    if !proclaimed.succeeded {
        return Err(failure(NOT_LEADER));
    }
    Ok(proclaimed.header)
}

/// Deletes the leader's key while it still has the leader's create revision (a resign by a
/// leader that already lost its key does nothing, and is no error: etcd's Resign).
fn resign_request(key: &Bytes, revision: i64) -> Request {
    let delete = DeleteRangeRequest { key: key.clone(), ..Default::default() };
    Request::Txn(TxnRequest {
        compare: vec![created_at(key, revision)],
        success: vec![op(Op::RequestDeleteRange(delete))],
        failure: vec![],
    })
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(&self, req: GrpcRequest<CampaignRequest>) -> Result<GrpcResponse<CampaignResponse>, Status> {
        super::voters_only(&self.handle)?;
        let prefix = key_prefix(&req.get_ref().name);
        super::may(&self.handle, &req, prefix.clone(), super::concurrency::prefix_end(&prefix), true).await?;
        let request = req.into_inner();
        let handle = &self.handle;
        let lease = session_lease(handle, request.lease).await?;
        let prefix = key_prefix(&request.name);
        let key = lease_key(&prefix, lease);
        let put = PutRequest { key: key.clone(), value: request.value.clone(), lease, ..Default::default() };
        let get = RangeRequest { key: key.clone(), ..Default::default() };
        let entered = txn(
            handle,
            TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![op(Op::RequestPut(put))],
                failure: vec![op(Op::RequestRange(get))],
            },
        )
        .await?;
        let revision = if entered.succeeded {
            entered.header.as_ref().map_or(0, |h| h.revision)
        } else {
            // This lease campaigns already: it keeps its place, with the new value.
            range_kvs(&entered, 0)?.first().map_or(0, |kv| kv.create_revision)
        };
        // From here until we lead, an RPC that ends because its client is gone resigns, as
        // etcd's Campaign resigns when its context ends (a failed proclaim resigns too).
        let undo = Undo::new(handle, resign_request(&key, revision));
        if !entered.succeeded {
            let current = range_kvs(&entered, 0)?.first().map(|kv| kv.value.clone()).unwrap_or_default();
            if current != request.value {
                if let Err(e) = proclaim(handle, &key, revision, lease, request.value.clone()).await {
                    undo.run().await;
                    return Err(e);
                }
            }
        }
        let waited = wait_deletes(handle, &prefix, revision - 1).await;
        // A wait that failed otherwise keeps the key, as etcd's does.
        undo.disarm();
        waited?;
        let leader = LeaderKey { name: request.name, key, rev: revision, lease };
        Ok(GrpcResponse::new(CampaignResponse { header: entered.header, leader: Some(leader) }))
    }

    async fn proclaim(&self, req: GrpcRequest<ProclaimRequest>) -> Result<GrpcResponse<ProclaimResponse>, Status> {
        super::voters_only(&self.handle)?;
        let key = req.get_ref().leader.as_ref().map(|l| l.key.clone()).unwrap_or_default();
        super::may(&self.handle, &req, key, Default::default(), true).await?;
        let request = req.into_inner();
        let leader = request.leader.ok_or_else(|| failure(MISSING_LEADER_KEY))?;
        let lease = session_lease(&self.handle, leader.lease).await?;
        let header = proclaim(&self.handle, &leader.key, leader.rev, lease, request.value).await?;
        Ok(GrpcResponse::new(ProclaimResponse { header }))
    }

    async fn leader(&self, req: GrpcRequest<LeaderRequest>) -> Result<GrpcResponse<LeaderResponse>, Status> {
        super::voters_only(&self.handle)?;
        let prefix = key_prefix(&req.get_ref().name);
        super::may(&self.handle, &req, prefix.clone(), super::concurrency::prefix_end(&prefix), false).await?;
        let prefix = key_prefix(&req.into_inner().name);
        let found = range(&self.handle, first_created(&prefix)).await?;
        let kv = found.kvs.into_iter().next().ok_or_else(|| failure(NO_LEADER))?;
        Ok(GrpcResponse::new(LeaderResponse { header: found.header, kv: Some(kv) }))
    }

    type ObserveStream = ChannelStream<LeaderResponse>;

    /// Streams the leader, then every value it proclaims, then the next leader once its key is
    /// gone, and so on (clientv3's `Election.Observe`: not every past value, always the latest).
    async fn observe(&self, req: GrpcRequest<LeaderRequest>) -> Result<GrpcResponse<Self::ObserveStream>, Status> {
        super::voters_only(&self.handle)?;
        let prefix = key_prefix(&req.get_ref().name);
        super::may(&self.handle, &req, prefix.clone(), super::concurrency::prefix_end(&prefix), false).await?;
        let prefix = key_prefix(&req.into_inner().name);
        let (tx, rx) = mpsc::channel(limits::ELECTION_OBSERVE_BUFFER);
        let handle = self.handle.clone();
        tokio::task::spawn(async move {
            // etcd's Observe ends its stream without an error when its observer fails. A client
            // that leaves ends it too, also while it waits on a watch without news.
            tokio::select! {
                _ = tx.closed() => {}
                ended = observe(&handle, &prefix, &tx) => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "election observer ended");
                    }
                }
            }
        });
        Ok(GrpcResponse::new(ChannelStream::new(rx)))
    }

    async fn resign(&self, req: GrpcRequest<ResignRequest>) -> Result<GrpcResponse<ResignResponse>, Status> {
        super::voters_only(&self.handle)?;
        let key = req.get_ref().leader.as_ref().map(|l| l.key.clone()).unwrap_or_default();
        super::may(&self.handle, &req, key, Default::default(), true).await?;
        let leader = req.into_inner().leader.ok_or_else(|| failure(MISSING_LEADER_KEY))?;
        // etcd first opens a session on the leader's lease, which for lease 0 grants a lease
        // nothing uses: skipped, it changes nothing but the lease list.
        let resigned = match self.handle.call(resign_request(&leader.key, leader.rev)).await {
            Ok(detcd_engine::node::Response::Txn(r)) => r,
            Ok(other) => return Err(super::unexpected(&other)),
            Err(e) => return Err(super::concurrency::unknown(e)),
        };
        Ok(GrpcResponse::new(ResignResponse { header: resigned.header }))
    }
}

/// The observer's loop; ends when the client is gone or a read or watch fails.
async fn observe(
    handle: &Handle,
    prefix: &Bytes,
    out: &mpsc::Sender<Result<LeaderResponse, Status>>,
) -> Result<(), Status> {
    loop {
        let found = range(handle, first_created(prefix)).await?;
        let (header, leader): (Option<ResponseHeader>, KeyValue) = match found.kvs.into_iter().next() {
            Some(kv) => (found.header, kv),
            None => {
                // No leader: wait for the first key put under the prefix (deletes are skipped).
                let from = found.header.as_ref().map_or(0, |h| h.revision);
                let mut watch = HubWatch::open(handle, prefix.clone(), prefix_end(prefix), from).await?;
                loop {
                    let response = watch.next().await?;
                    let put = response.events.into_iter().find(|e| e.r#type == EventType::Put as i32);
                    if let Some(kv) = put.and_then(|e| e.kv) {
                        // The header of the response may cover later revisions: report the put's.
                        let mut header = response.header.unwrap_or_default();
                        header.revision = kv.mod_revision;
                        break (Some(header), kv);
                    }
                }
            }
        };
        let from = header.as_ref().map_or(0, |h| h.revision) + 1;
        let key = leader.key.clone();
        if out.send(Ok(LeaderResponse { header, kv: Some(leader) })).await.is_err() {
            return Ok(());
        }
        // This leader's proclamations, until its key is deleted.
        let mut watch = HubWatch::open(handle, key, bytes::Bytes::new(), from).await?;
        'leader: loop {
            let response = watch.next().await?;
            for event in response.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'leader;
                }
                let answer = LeaderResponse { header: response.header, kv: event.kv };
                if out.send(Ok(answer)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}
