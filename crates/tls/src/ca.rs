//! The local certificate authority of one stack, for loopback labs where no public CA can
//! reach the site: made at the first `up`, kept in the state directory (the key mode
//! 0600), it issues short-lived leaf certificates (Caddy's `tls internal`: 12 hours) for
//! the site's names and the server's address. It is name-constrained to the site's domain
//! and the loopback range, so trusting it trusts nothing else.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, SanType, PKCS_ECDSA_P256_SHA256,
};

use crate::TlsError;

/// How long a leaf certificate of the local CA is valid.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long the CA itself is valid (Caddy's root: about ten years).
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

pub struct LocalCa {
    cert_path: PathBuf,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
pub struct Issued {
    /// The leaf, then the CA: what a server sends.
    pub chain_pem: String,
    pub key_pem: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl LocalCa {
    /// Loads the CA kept in `dir`, or makes one for `domain` there. A CA made for another
    /// domain (the design's domain changed) is replaced: its name constraints would refuse
    /// the new names.
    pub fn load_or_create(dir: &Path, stack: &str, domain: &str) -> Result<LocalCa, TlsError> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        let domain_path = dir.join("ca.domain");
        let params = ca_params(stack, domain);
        let same_domain = std::fs::read_to_string(&domain_path).is_ok_and(|d| d.trim() == domain);
        if same_domain && cert_path.exists() && key_path.exists() {
            let key_pem = read(&key_path)?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::BadKey {
                path: key_path.clone(),
                reason: e.to_string(),
            })?;
            return Ok(LocalCa {
                cert_pem: read(&cert_path)?,
                cert_path,
                issuer: Issuer::new(params, key),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| TlsError::Write {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let mut params = params;
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + CA_LIFETIME).into();
        let cert = params.self_signed(&key).map_err(generate)?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_file(&cert_path, cert.pem().as_bytes())?;
        write_file(&domain_path, domain.as_bytes())?;
        Ok(LocalCa {
            cert_pem: cert.pem(),
            cert_path,
            issuer: Issuer::new(params, key),
        })
    }

    /// Where the CA's certificate is, for `curl --cacert`.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf for `dns_names` and `ips`, valid from a minute ago (clock skew) for
    /// `lifetime`.
    pub fn issue(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        lifetime: Duration,
    ) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::new(dns_names.to_vec()).map_err(generate)?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            dns_names
                .first()
                .cloned()
                .unwrap_or_else(|| "webstack".into()),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_before = SystemTime::now() - Duration::from_secs(60);
        let not_after = not_before + lifetime;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            // X.509 keeps whole seconds.
            not_before: truncate(not_before),
            not_after: truncate(not_after),
        })
    }
}

fn ca_params(stack: &str, domain: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "webstack");
    dn.push(
        DnType::CommonName,
        format!("webstack local CA for stack {stack}"),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName(domain.to_string()),
            GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 0], [255, 0, 0, 0])),
            GeneralSubtree::IpAddress(CidrSubnet::V6(
                std::net::Ipv6Addr::LOCALHOST.octets(),
                [0xff; 16],
            )),
        ],
        excluded_subtrees: vec![],
    });
    params
}

fn truncate(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn generate(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        source: e,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    std::fs::write(path, bytes).map_err(|e| TlsError::Write {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Writes a private key readable by its owner only (mode 0600 from creation on, never
/// briefly world-readable).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let err = |e| TlsError::Write {
        path: path.to_path_buf(),
        source: e,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
