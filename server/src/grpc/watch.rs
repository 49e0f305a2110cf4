use detcd_proto::etcdserverpb::watch_server::Watch;
use detcd_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::mpsc;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

use super::ChannelStream;
use crate::driver::{Command, Handle, WATCH_SEND_BUFFER};

pub struct WatchService {
    pub handle: Handle,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ChannelStream<WatchResponse>;

    /// One client stream = one hub stream. Requests go to the driver in order; responses come
    /// back through a small buffer, which the driver fills only when it has room (so a slow
    /// client slows only itself).
    async fn watch(
        &self,
        req: GrpcRequest<Streaming<WatchRequest>>,
    ) -> Result<GrpcResponse<Self::WatchStream>, Status> {
        let stream = self.handle.new_watch_stream();
        let mut requests = req.into_inner();
        let (responses_tx, mut responses_rx) = mpsc::channel::<WatchResponse>(WATCH_SEND_BUFFER);
        let (out_tx, out_rx) = mpsc::channel(1);
        self.handle.send(Command::WatchOpen { stream, responses: responses_tx }).await.map_err(super::status)?;
        let handle = self.handle.clone();
        tokio::task::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                if handle.send(Command::Watch { stream, request }).await.is_err() {
                    break;
                }
            }
            let _ = handle.send(Command::WatchClose { stream }).await;
        });
        tokio::task::spawn(async move {
            while let Some(response) = responses_rx.recv().await {
                if out_tx.send(Ok(response)).await.is_err() {
                    break;
                }
            }
        });
        Ok(GrpcResponse::new(ChannelStream::new(out_rx)))
    }
}
