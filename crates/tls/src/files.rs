//! A certificate chain and key in PEM files, checked before they are served: readable,
//! parseable, currently valid, the key belonging to the certificate, the names covered.
//! Each mistake is its own error naming the file, so `validate` and `up` can say which.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::info::{cert_info, CertInfo};
use crate::TlsError;

/// A chain and key ready to serve, with what the leaf says about itself.
#[derive(Clone)]
pub struct LoadedPair {
    pub certified: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Reads and checks a chain and key from PEM text (`cert_path` and `key_path` name them
/// in errors), requiring every name of `names` to be covered and the leaf valid at `now`.
pub fn check_pair(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
    now: SystemTime,
) -> Result<LoadedPair, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert_path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    };
    let info = cert_info(leaf).map_err(|reason| TlsError::BadCertificate {
        path: cert_path.to_path_buf(),
        reason,
    })?;
    if now > info.not_after {
        return Err(TlsError::Expired {
            path: cert_path.to_path_buf(),
            not_after: httpdate(info.not_after),
        });
    }
    if now < info.not_before {
        return Err(TlsError::NotYetValid {
            path: cert_path.to_path_buf(),
            not_before: httpdate(info.not_before),
        });
    }
    for name in names {
        if !info.covers(name) {
            return Err(TlsError::NameNotCovered {
                path: cert_path.to_path_buf(),
                name: name.clone(),
                names: info.names.join(", "),
            });
        }
    }
    let bad_key = |reason: String| TlsError::BadKey {
        path: key_path.to_path_buf(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad_key(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad_key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
    })?;
    Ok(LoadedPair {
        certified: Arc::new(certified),
        info,
    })
}

/// Reads a chain and key from files and checks them (see [`check_pair`]).
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
    now: SystemTime,
) -> Result<LoadedPair, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            source: e,
        })
    };
    check_pair(
        &read(cert_path)?,
        &read(key_path)?,
        cert_path,
        key_path,
        names,
        now,
    )
}

/// A moment as a person reads it, in UTC (`2026-12-01 08:00:00 UTC`).
pub(crate) fn httpdate(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::LocalCa;

    fn names() -> Vec<String> {
        vec!["www.foobar.com".into()]
    }

    fn issued(dir: &Path) -> crate::Issued {
        let ca = LocalCa::load_or_create(dir, "t", "foobar.com").unwrap();
        ca.issue(
            &names(),
            &["127.0.0.1".parse().unwrap()],
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    fn check(cert: &[u8], key: &[u8], now: SystemTime) -> Result<LoadedPair, TlsError> {
        check_pair(
            cert,
            key,
            Path::new("site.pem"),
            Path::new("site.key"),
            &names(),
            now,
        )
    }

    #[test]
    fn a_good_pair_loads_and_says_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let i = issued(dir.path());
        let pair = check(
            i.chain_pem.as_bytes(),
            i.key_pem.as_bytes(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(pair.info.names, ["www.foobar.com", "127.0.0.1"]);
        assert!(
            pair.info.issuer.contains("webstack local CA"),
            "{}",
            pair.info.issuer
        );
        assert_eq!(pair.info.not_after, i.not_after);
        assert_eq!(pair.certified.cert.len(), 2, "leaf and CA");
    }

    #[test]
    fn each_mistake_has_its_own_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let i = issued(dir.path());
        let other = issued(tempfile::tempdir().unwrap().path());
        let (cert, key) = (i.chain_pem.as_bytes(), i.key_pem.as_bytes());
        let now = SystemTime::now();
        let msg = |r: Result<LoadedPair, TlsError>| r.err().expect("an error").to_string();

        let e = msg(check(b"", key, now));
        assert!(e.contains("site.pem holds no PEM certificate"), "{e}");
        let e = msg(check(
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            key,
            now,
        ));
        assert!(e.contains("site.pem"), "{e}");
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = msg(check(garbage, key, now));
        assert!(e.contains("site.pem is not a valid certificate"), "{e}");
        let e = msg(check(cert, b"nothing", now));
        assert!(e.contains("site.key holds no usable private key"), "{e}");
        let e = msg(check(cert, other.key_pem.as_bytes(), now));
        assert!(
            e.contains("the key in site.key does not belong to the certificate in site.pem"),
            "{e}"
        );
        let e = msg(check(cert, key, i.not_after + Duration::from_secs(1)));
        assert!(e.contains("site.pem expired on"), "{e}");
        let e = msg(check(cert, key, i.not_before - Duration::from_secs(1)));
        assert!(e.contains("site.pem is not valid before"), "{e}");
        let e = msg(check_pair(
            cert,
            key,
            Path::new("site.pem"),
            Path::new("site.key"),
            &["shop.example.org".into()],
            now,
        ));
        assert!(
            e.contains(
                "site.pem does not cover shop.example.org (it names: www.foobar.com, 127.0.0.1)"
            ),
            "{e}"
        );
        let e = msg(load_pair(
            &dir.path().join("missing.pem"),
            Path::new("site.key"),
            &names(),
            now,
        ));
        assert!(e.contains("missing.pem"), "{e}");
    }
}
