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
