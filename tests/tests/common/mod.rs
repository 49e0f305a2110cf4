//! What the tests through the etcd-client crate share (a module of each test crate that uses it:
//! etcd-client is a dev-dependency, so it cannot live in `detcd_tests`).

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// A client of `endpoint`: connecting may take `connect_timeout`, each request `request_timeout`.
pub async fn connect(endpoint: &str, connect_timeout: Duration, request_timeout: Duration) -> Client {
    let options = ConnectOptions::new().with_connect_timeout(connect_timeout).with_timeout(request_timeout);
    Client::connect([endpoint], Some(options)).await.unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// The gRPC code and message of a failed call (panics when it succeeded or failed otherwise).
pub fn grpc_error<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>) -> (String, String) {
    match result {
        Err(etcd_client::Error::GRpcStatus(status)) => (format!("{:?}", status.code()), status.message().to_string()),
        Err(other) => panic!("expected a gRPC status, got {other}"),
        Ok(answer) => panic!("expected an error, got {answer:?}"),
    }
}
