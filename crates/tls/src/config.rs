//! The rustls server configuration of every TLS endpoint, and the certificate it serves,
//! which can be swapped while the configuration (and every open connection) stays.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::TlsError;

/// The certificate an endpoint serves now. A renewal replaces it: handshakes from then
/// on get the new one, connections already open keep the keys they agreed on.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn new(first: Arc<CertifiedKey>) -> Arc<ReloadableCert> {
        Arc::new(ReloadableCert {
            current: RwLock::new(first),
        })
    }

    pub fn replace(&self, next: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// TLS 1.2 and 1.3 only, with ring's default suites, which are Mozilla's "intermediate"
/// set (TLS 1.3 AES-GCM and ChaCha20; TLS 1.2 ECDHE with AES-GCM and ChaCha20, no CBC,
/// no RSA key exchange); ALPN h2 then http/1.1; stateless session tickets (rotated every
/// 6 hours by rustls' ticketer) and a session cache for clients without tickets.
pub fn server_config(cert: Arc<ReloadableCert>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = ServerSessionMemoryCache::new(4096);
    config.ticketer =
        rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}
