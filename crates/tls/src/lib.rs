//! HTTPS for webstack's TLS endpoints (load balancer, web server): the per-stack
//! certificate authority, certificates a design names in files, the rustls server
//! configuration (TLS 1.2 and 1.3 only, Mozilla's "intermediate" suites, ALPN h2 and
//! http/1.1, session tickets and a session cache), and a certificate that can be replaced
//! while connections stay open.
//!
//! Architecture invariant: knows certificates, keys, names and files; nothing of designs,
//! sockets or HTTP.

mod acme;
mod ca;
mod config;
mod files;
mod info;
mod renewal;

pub use acme::{account_file, order as acme_order, AcmeSettings, Ordered};
pub use ca::{Issued, LocalCa, LEAF_LIFETIME};
pub use config::{server_config, ReloadableCert};
pub use files::{check_pair, load_pair, LoadedPair};
pub use info::{cert_info, CertInfo};
pub use renewal::{needs_renewal, renew_at};

use std::path::PathBuf;

/// What can go wrong with a certificate or key, each naming the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a valid certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path} holds no usable private key (expected PKCS#8, SEC1 or RSA PEM): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {path} expired on {not_after}")]
    Expired { path: PathBuf, not_after: String },
    #[error("the certificate in {path} is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("the certificate in {path} does not cover {name} (it names: {names})")]
    NameNotCovered {
        path: PathBuf,
        name: String,
        names: String,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("ACME: {0}")]
    Acme(String),
}
