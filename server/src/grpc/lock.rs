//! etcd's `v3lock` service: a distributed mutex over keys, with etcd's semantics (etcd serves
//! it with clientv3's `concurrency.Mutex` on a session of the request's lease; see
//! [`super::concurrency`] for why it is built as a client of the member).
//!
//! `Lock(name, lease)` puts `name/<lease id in hex>` with the lease, unless that key exists
//! already (the same lease asking again queues at its old place). Waiters are ordered by the
//! create revision of their keys: the holder is the oldest key under `name/`. A waiter waits
//! for the deletion of the key just older than its own, again until none is older; it never
//! polls. Deleting a key (Unlock, the lease expiring or being revoked) hands the lock on.

use detcd_engine::node::Request;
use detcd_proto::etcdserverpb::request_op::Request as Op;
use detcd_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use detcd_proto::v3lockpb::lock_server::Lock;
use detcd_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::concurrency::{
    created_at, delete, failure, first_created, key_prefix, lease_key, op, range, range_kvs, session_lease, txn,
    wait_deletes, Undo,
};
use crate::driver::Handle;

/// clientv3's `ErrSessionExpired`: the waiter's own key was gone when its turn came (its lease
/// expired or was revoked while it waited).
const SESSION_EXPIRED: &str = "mutex: session is expired";

pub struct LockService {
    pub handle: Handle,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, req: GrpcRequest<LockRequest>) -> Result<GrpcResponse<LockResponse>, Status> {
        super::voters_only(&self.handle)?;
        let prefix = super::concurrency::key_prefix(&req.get_ref().name);
        let end = super::concurrency::prefix_end(&prefix);
        super::may(&self.handle, &req, prefix, end, true).await?;
        let request = req.into_inner();
        let handle = &self.handle;
        let lease = session_lease(handle, request.lease).await?;
        let prefix = key_prefix(&request.name);
        let key = lease_key(&prefix, lease);
        // One txn queues us and reads the holder, so the uncontended lock takes one round.
        let put = PutRequest { key: key.clone(), lease, ..Default::default() };
        let get = RangeRequest { key: key.clone(), ..Default::default() };
        let queue = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![op(Op::RequestPut(put)), op(Op::RequestRange(first_created(&prefix)))],
            failure: vec![op(Op::RequestRange(get)), op(Op::RequestRange(first_created(&prefix)))],
        };
        let queued = txn(handle, queue).await?;
        let my_revision = if queued.succeeded {
            queued.header.as_ref().map_or(0, |h| h.revision)
        } else {
            range_kvs(&queued, 0)?.first().map_or(0, |kv| kv.create_revision)
        };
        let holder = range_kvs(&queued, 1)?.first().map(|kv| kv.create_revision);
        if holder.is_none() || holder == Some(my_revision) {
            return Ok(GrpcResponse::new(LockResponse { header: queued.header, key }));
        }
        // From here until the lock is ours, an RPC that ends (an error, or its client gone)
        // takes our key out of the queue, as etcd's Mutex.Lock unlocks when its wait fails.
        let undo =
            Undo::new(handle, Request::DeleteRange(DeleteRangeRequest { key: key.clone(), ..Default::default() }));
        if let Err(e) = wait_deletes(handle, &prefix, my_revision - 1).await {
            undo.run().await;
            return Err(e);
        }
        // Every older waiter is gone; our key must still be there (its lease may have expired
        // while we waited).
        let mine = match range(handle, RangeRequest { key: key.clone(), ..Default::default() }).await {
            Ok(mine) => mine,
            Err(e) => {
                undo.run().await;
                return Err(e);
            }
        };
        undo.disarm();
        if mine.kvs.is_empty() {
            return Err(failure(SESSION_EXPIRED));
        }
        Ok(GrpcResponse::new(LockResponse { header: mine.header, key }))
    }

    async fn unlock(&self, req: GrpcRequest<UnlockRequest>) -> Result<GrpcResponse<UnlockResponse>, Status> {
        super::voters_only(&self.handle)?;
        super::may(&self.handle, &req, req.get_ref().key.clone(), Default::default(), true).await?;
        let deleted = delete(&self.handle, req.into_inner().key).await?;
        Ok(GrpcResponse::new(UnlockResponse { header: deleted.header }))
    }
}
