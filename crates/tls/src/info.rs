//! What a certificate says about itself, for checks and for `webstack status`.

use std::time::{Duration, SystemTime};

use x509_parser::extensions::GeneralName;

/// The facts of a leaf certificate people and checks need.
#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    /// DNS names and IP addresses of the subject alternative names.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Parses a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => names.push(
                        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
                    ),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(bytes);
                        names.push(std::net::Ipv6Addr::from(b).to_string())
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Ok(CertInfo {
        names,
        issuer: cert.issuer().to_string(),
        not_before: at(validity.not_before.timestamp()),
        not_after: at(validity.not_after.timestamp()),
    })
}

impl CertInfo {
    /// Whether the certificate covers `name`: an exact DNS name or address, or a wildcard
    /// `*.example.com` for one label below it (RFC 6125 §6.4.3).
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            if let Some(suffix) = n.strip_prefix("*.") {
                name.split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix)
            } else {
                n == name
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        let info = CertInfo {
            names: vec![
                "*.foobar.com".into(),
                "foobar.com".into(),
                "127.0.0.1".into(),
            ],
            issuer: String::new(),
            not_before: SystemTime::UNIX_EPOCH,
            not_after: SystemTime::UNIX_EPOCH,
        };
        assert!(info.covers("www.foobar.com"));
        assert!(info.covers("WWW.foobar.com."));
        assert!(info.covers("foobar.com"));
        assert!(info.covers("127.0.0.1"));
        assert!(!info.covers("a.b.foobar.com"));
        assert!(!info.covers("foobar.org"));
    }
}
