use detcd_proto::etcdserverpb::watch_server::Watch;
use detcd_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use crate::driver::{Command, Handle, WatchResponses, WATCH_SEND_BUFFER};

pub struct WatchService {
    pub handle: Handle,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchResponses;

    /// One client stream = one hub stream. Requests go to the driver in order; responses come
    /// back through a small buffer, which the driver fills only when it has room (so a slow
    /// client slows only itself), and which gRPC reads directly (no task in between).
    async fn watch(
        &self,
        req: GrpcRequest<Streaming<WatchRequest>>,
    ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
        super::voters_only(&self.handle)?;
        let stream = self.handle.new_watch_stream();
        // A JWT is verified once, when the stream opens (etcd looks at it at each create).
        let caller = self.handle.verified(super::caller(&req));
        let mut requests = req.into_inner();
        let (responses_tx, responses_rx) = mpsc::channel::<WatchResponse>(WATCH_SEND_BUFFER);
        self.handle
            .send(Command::WatchOpen { stream, responses: responses_tx, caller })
            .await
            .map_err(super::status)?;
        let handle = self.handle.clone();
        tokio::task::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                if handle.send(Command::Watch { stream, request }).await.is_err() {
                    break;
                }
            }
            let _ = handle.send(Command::WatchClose { stream }).await;
        });
        Ok(GrpcResponse::new(self.handle.watch_responses(responses_rx)))
    }
}
