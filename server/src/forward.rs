//! Forwarding of the requests only the leader can serve (lease keepalive and time-to-live,
//! member promote, move-leader) from the member a client talks to, over the peer service — as
//! etcd forwards them, so that a client may talk to any member.

use std::collections::BTreeMap;

use detcd_engine::Error;
use detcd_proto::peerpb::peer_client::PeerClient;
use detcd_proto::peerpb::{forward_request, forward_response, ForwardRequest};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic::Status;

use crate::driver::Handle;
use crate::grpc::status;

pub struct Forwarder {
    handle: Handle,
    /// One connection per leader URL, kept for the next request.
    clients: Mutex<BTreeMap<String, PeerClient<Channel>>>,
}

impl Forwarder {
    pub fn new(handle: Handle) -> Forwarder {
        Forwarder { handle, clients: Mutex::new(BTreeMap::new()) }
    }

    /// Sends `request` to the leader. Its answer — or its error status, as it is — comes back.
    /// `NoLeader` when no other member is known to lead.
    pub async fn forward(&self, request: forward_request::Request) -> Result<forward_response::Response, Status> {
        let url = self.handle.leader_peer_url().await.map_err(status)?.ok_or_else(|| status(Error::NoLeader))?;
        let mut client = {
            let mut clients = self.clients.lock().await;
            match clients.get(&url) {
                Some(c) => c.clone(),
                None => {
                    let c = crate::peer::connect(&url).await.map_err(|_| status(Error::Unhealthy))?;
                    clients.insert(url.clone(), c.clone());
                    c
                }
            }
        };
        match client.forward(ForwardRequest { request: Some(request) }).await {
            Ok(answer) => answer.into_inner().response.ok_or_else(|| Status::internal("detcd: empty forwarded answer")),
            Err(e) => {
                if e.code() == tonic::Code::Unavailable && !e.message().starts_with("etcdserver:") {
                    // The connection broke, not the leader's answer: dial again next time.
                    self.clients.lock().await.remove(&url);
                }
                Err(e)
            }
        }
    }
}

/// Whether a status is etcd's error `e` (forwarded errors arrive as statuses).
pub fn is(s: &Status, e: Error) -> bool {
    s.message() == e.message()
}
