//! TLS on the client listener, with rustls (ring provider): etcd's `--cert-file`, `--key-file`,
//! `--trusted-ca-file` and `--client-cert-auth`.
//!
//! As in etcd, `--client-cert-auth` makes a client certificate signed by one of the
//! `--trusted-ca-file` CAs mandatory; without it no client certificate is asked for (the CA file
//! is then unused). ALPN offers `h2` (gRPC) and `http/1.1` (the plain-HTTP endpoints); a
//! connection that negotiated `h2` goes to gRPC, any other to the HTTP endpoints — the
//! plain-text listener tells them apart by their first bytes instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::TlsFiles;

/// The server side's rustls configuration for `files`: reads and checks them.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    files.build_server_config()
}

impl TlsFiles {
    /// The server side's rustls configuration: reads and checks the files.
    fn build_server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(|certs| certs.collect())
            .map_err(|e| format!("--cert-file {}: {e}", self.cert_file))?;
        if certs.is_empty() {
            return Err(format!("--cert-file {}: no certificate in it", self.cert_file));
        }
        let key =
            PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| format!("--key-file {}: {e}", self.key_file))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = if self.client_cert_auth {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(&self.trusted_ca_file)
                .map_err(|e| format!("--trusted-ca-file {}: {e}", self.trusted_ca_file))?;
            for ca in cas {
                let ca = ca.map_err(|e| format!("--trusted-ca-file {}: {e}", self.trusted_ca_file))?;
                roots.add(ca).map_err(|e| format!("--trusted-ca-file {}: {e}", self.trusted_ca_file))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--trusted-ca-file {}: {e}", self.trusted_ca_file))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| format!("--cert-file / --key-file: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A client connection, in plain text or TLS: one type for the gRPC server's stream of
/// connections.
pub enum ClientConnection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ClientConnection {
    /// Whether a TLS connection negotiated HTTP/2 (gRPC).
    pub fn negotiated_h2(&self) -> bool {
        match self {
            ClientConnection::Plain(_) => false,
            ClientConnection::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

impl AsyncRead for ClientConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConnection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientConnection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientConnection::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientConnection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConnection::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientConnection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientConnection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientConnection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tonic::transport::server::Connected for ClientConnection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            ClientConnection::Plain(s) => s.connect_info(),
            ClientConnection::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

/// Every connection `listener` accepts, once its TLS handshake succeeded (failed ones are
/// dropped, logged at debug): the incoming stream of a TLS-only gRPC server.
pub fn accept_all(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<ClientConnection>> {
    let (tx, rx) = tokio::sync::mpsc::channel(detcd_engine::limits::CLIENT_ACCEPT_QUEUE);
    tokio::task::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a TLS connection failed");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::task::spawn(async move {
                match tokio::time::timeout(crate::http::HTTP_REQUEST_HEAD_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(ClientConnection::Tls(Box::new(tls)))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake with a peer failed"),
                    Err(_) => tracing::debug!("TLS handshake with a peer timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_that_do_not_go_together_are_refused() {
        let files = |cert: &str, key: &str, ca: &str, auth: bool| TlsFiles {
            cert_file: cert.into(),
            key_file: key.into(),
            trusted_ca_file: ca.into(),
            client_cert_auth: auth,
        };
        assert_eq!(files("", "", "", false).check(), Ok(()));
        assert!(!files("", "", "", false).enabled());
        assert_eq!(files("c", "k", "", false).check(), Ok(()));
        assert!(files("c", "", "", false).check().is_err());
        assert!(files("c", "k", "", true).check().is_err());
        assert!(files("", "", "ca", true).check().is_err());
        assert_eq!(files("c", "k", "ca", true).check(), Ok(()));
        let missing = server_config(&files("/nonexistent/cert.pem", "/nonexistent/key.pem", "", false));
        assert!(missing.is_err_and(|e| e.starts_with("--cert-file /nonexistent/cert.pem")));
    }
}

/// TLS between members: etcd's `--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`
/// and `--peer-client-cert-auth`. A member presents its peer certificate both when it serves
/// and when it dials, and checks the other side's against the peer CA.
pub mod peer {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, OnceLock};
    use std::task::{Context, Poll};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::net::TcpStream;

    use crate::config::TlsFiles;

    /// The dialing side's configuration, set once at start (one member per process outside
    /// the simulator, which has no TLS).
    static CLIENT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn certs(path: &str, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(path).and_then(|c| c.collect()).map_err(|e| format!("{flag} {path}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{flag} {path}: no certificate in it"));
        }
        Ok(certs)
    }

    fn roots(path: &str) -> Result<Arc<rustls::RootCertStore>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs(path, "--peer-trusted-ca-file")? {
            roots.add(ca).map_err(|e| format!("--peer-trusted-ca-file {path}: {e}"))?;
        }
        Ok(Arc::new(roots))
    }

    /// Reads the peer files; the dialing side's configuration is kept for [`connector`], the
    /// serving side's returned.
    pub fn configure(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
        let chain = certs(&files.cert_file, "--peer-cert-file")?;
        let key = || {
            PrivateKeyDer::from_pem_file(&files.key_file)
                .map_err(|e| format!("--peer-key-file {}: {e}", files.key_file))
        };
        let roots = roots(&files.trusted_ca_file)?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let server = if files.client_cert_auth {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| format!("--peer-trusted-ca-file: {e}"))?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        };
        let mut server = server
            .with_single_cert(chain.clone(), key()?)
            .map_err(|e| format!("--peer-cert-file / --peer-key-file: {e}"))?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key()?)
            .map_err(|e| format!("--peer-cert-file / --peer-key-file: {e}"))?;
        client.alpn_protocols = vec![b"h2".to_vec()];
        let _ = CLIENT.set(Arc::new(client));
        Ok(Arc::new(server))
    }

    /// The connector tonic dials https:// peer URLs with; `None` before [`configure`].
    pub fn connector() -> Option<Connector> {
        CLIENT.get().cloned().map(Connector)
    }

    #[derive(Clone)]
    pub struct Connector(Arc<rustls::ClientConfig>);

    impl tower_service::Service<http::Uri> for Connector {
        type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
        type Error = std::io::Error;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, uri: http::Uri) -> Self::Future {
            let config = self.0.clone();
            Box::pin(async move {
                let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
                let host = uri.host().ok_or_else(|| invalid(format!("{uri}: no host")))?.to_string();
                let port = uri.port_u16().unwrap_or(443);
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from(host.clone()).map_err(|e| invalid(format!("{host}: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
                Ok(hyper_util::rt::TokioIo::new(tls))
            })
        }
    }
}
