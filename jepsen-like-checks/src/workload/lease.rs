//! `lease`: lease grants, keepalives and revokes, puts attached to leases, ranges over the keys.
//!
//! A client holds up to [`LEASES_HELD_MAX`] leases it granted; it keeps some alive, revokes some,
//! and attaches puts to them (or to a lease it already revoked, which etcd refuses). Short TTLs
//! let some leases expire during the run, taking their keys with them. When the run ends, the
//! client revokes the leases it still holds (recorded like the rest).

use detcd_proto::etcdserverpb as pb;
use rand::Rng;
use tokio::sync::mpsc;

use super::{convert, prefix_end, Client, Failure, RequestStream};
use crate::history::{Bytes, PutRequest, RangeRequest, Request, Response};

/// Leases granted and not yet revoked that a client keeps track of.
const LEASES_HELD_MAX: usize = 4;
/// TTL of a granted lease, in seconds.
const LEASE_TTL_S_MIN: i64 = 2;
const LEASE_TTL_S_MAX: i64 = 6;
/// Out of 100 requests (when a lease is held and fewer than the max): grants, keepalives,
/// revokes, puts; the rest are ranges.
const GRANT_PERCENT: u32 = 15;
const KEEPALIVE_PERCENT: u32 = 20;
const REVOKE_PERCENT: u32 = 10;
const PUT_PERCENT: u32 = 35;

/// The id of a client's `n`-th grant: the client picks it, so that the checkers know which lease
/// an indeterminate grant would have made (with the server picking, they cannot check at all).
/// Unique across clients: the client number in the high half, `n` in the low.
fn lease_id(client: u64, n: i64) -> i64 {
    (((client & 0x7fff_ffff) as i64 + 1) << 32) | (n & 0xffff_ffff)
}

pub(crate) async fn run(client: &mut Client) {
    let mut held: Vec<i64> = Vec::new();
    // The last lease revoked: puts and keepalives on it now and then, which etcd must refuse.
    let mut revoked = 0;
    // Grants made so far: the next lease's id is drawn from it (see `lease_id`).
    let mut grants: i64 = 0;
    let prefix = Bytes::from(client.spec.key_prefix.clone());
    while client.running() {
        let dice = client.rng.gen_range(0..100);
        let some_lease = |client: &mut Client, held: &[i64]| {
            if held.is_empty() || (revoked != 0 && client.rng.gen_range(0..10) == 0) {
                revoked
            } else {
                held[client.rng.gen_range(0..held.len())]
            }
        };
        let request = if held.is_empty() || (dice < GRANT_PERCENT && held.len() < LEASES_HELD_MAX) {
            grants += 1;
            let id = lease_id(client.spec.id, grants);
            Request::LeaseGrant { ttl_s: client.rng.gen_range(LEASE_TTL_S_MIN..=LEASE_TTL_S_MAX), id }
        } else if dice < GRANT_PERCENT + KEEPALIVE_PERCENT {
            Request::LeaseKeepalive { id: some_lease(client, &held) }
        } else if dice < GRANT_PERCENT + KEEPALIVE_PERCENT + REVOKE_PERCENT {
            Request::LeaseRevoke { id: some_lease(client, &held) }
        } else if dice < GRANT_PERCENT + KEEPALIVE_PERCENT + REVOKE_PERCENT + PUT_PERCENT {
            let lease = some_lease(client, &held);
            let (key, value) = (client.random_key("l").into(), client.unique_value().into());
            Request::Put(PutRequest { key, value, lease, prev_kv: false })
        } else {
            Request::Range(RangeRequest {
                key: prefix.clone(),
                range_end: Bytes::from(prefix_end(prefix.as_slice())),
                revision: 0,
            })
        };
        if client.conn().await.is_none() {
            break;
        }
        let call_ns = client.recorder.now_ns();
        let result = match &request {
            Request::LeaseGrant { .. } | Request::LeaseKeepalive { .. } | Request::LeaseRevoke { .. } => {
                lease_call(client, &request).await
            }
            kv => client.kv(kv).await,
        };
        match (&request, &result) {
            (Request::LeaseGrant { .. }, Ok(Response::LeaseGrant { id, .. })) => held.push(*id),
            (Request::LeaseRevoke { id }, Ok(_) | Err(Failure::Refused(_))) => {
                held.retain(|h| h != id);
                revoked = *id;
            }
            (Request::LeaseKeepalive { id }, Ok(Response::LeaseKeepalive { ttl_s: 0, .. })) => {
                // Expired (or revoked): no use keeping it.
                held.retain(|h| h != id);
            }
            _ => {}
        }
        client.record(call_ns, request, result);
    }
    // Leases left behind would expire after the run and delete their keys, making revisions a
    // later recording on the same cluster cannot explain: revoke them, on the record.
    for id in held {
        if client.conn_now().await.is_none() {
            break;
        }
        let call_ns = client.recorder.now_ns();
        let request = Request::LeaseRevoke { id };
        let result = lease_call(client, &request).await;
        client.record(call_ns, request, result);
    }
}

async fn lease_call(client: &mut Client, request: &Request) -> Result<Response, Failure> {
    let timeout = client.spec.op_timeout;
    let Some(conn) = client.conn_now().await else {
        return Err(Failure::Refused("no connection (nothing was sent)".into()));
    };
    let mut lease = conn.lease.clone();
    let answer = tokio::time::timeout(timeout, async {
        match *request {
            Request::LeaseGrant { ttl_s, id } => {
                let r = lease.lease_grant(pb::LeaseGrantRequest { ttl: ttl_s, id }).await?.into_inner();
                if !r.error.is_empty() {
                    return Ok(Err(Failure::Refused(r.error)));
                }
                Ok(Ok(Response::LeaseGrant {
                    header_revision: convert::header_revision(&r.header),
                    id: r.id,
                    ttl_s: r.ttl,
                }))
            }
            Request::LeaseRevoke { id } => {
                let r = lease.lease_revoke(pb::LeaseRevokeRequest { id }).await?.into_inner();
                Ok(Ok(Response::LeaseRevoke { header_revision: convert::header_revision(&r.header) }))
            }
            Request::LeaseKeepalive { id } => {
                // One request on its own stream, kept open until the answer came.
                let (requests, queue) = mpsc::channel(1);
                requests.try_send(pb::LeaseKeepAliveRequest { id }).expect("an empty queue has room");
                let mut answers = lease.lease_keep_alive(RequestStream(queue)).await?.into_inner();
                let answer = answers.message().await?;
                drop(requests);
                Ok(match answer {
                    Some(r) => Ok(Response::LeaseKeepalive {
                        header_revision: convert::header_revision(&r.header),
                        ttl_s: r.ttl,
                    }),
                    None => Err(Failure::Unknown("the keepalive stream ended without an answer".into())),
                })
            }
            _ => Ok(Err(Failure::Refused(format!("not a lease request: {request}")))),
        }
    })
    .await;
    client.settle(answer, timeout).and_then(|r| r)
}
