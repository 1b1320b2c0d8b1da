//! Where `webstack bench` sends its requests: a URL whose host is resolved through the
//! stack's own DNS server, as a browser pointed at the stack would.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use webstack_topology::Design;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
}

/// Splits `http://host[:port][/path]`.
pub fn parse_url(url: &str) -> Result<(String, Option<u16>, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url:?} is not an http:// URL (HTTPS comes with TLS support)");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (
            h.to_string(),
            Some(
                p.parse::<u16>()
                    .with_context(|| format!("{p:?} is not a port"))?,
            ),
        ),
        _ => (authority.to_string(), None),
    };
    if host.is_empty() {
        bail!("{url:?} has no host");
    }
    Ok((host, port, path))
}

/// The target for `url` (or, without one, the design's entry point): an IP host is taken
/// as it is; a name is asked of the stack's DNS server.
pub async fn resolve(design: &Design, url: Option<&str>) -> Result<Target> {
    let (entry_host, entry) = design
        .entry_point()
        .context("the design has no www record to send requests to")?;
    let (host, port, path) = match url {
        Some(u) => parse_url(u)?,
        None => (entry_host, Some(entry.port()), "/".to_string()),
    };
    let port = port.unwrap_or(80);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target {
            addr: SocketAddr::new(ip, port),
            host,
            path,
        });
    }
    let dns = SocketAddr::new(design.dns.address, design.dns.port);
    let answer = webstack_dns::query(
        dns,
        &format!("{host}."),
        webstack_dns::RecordType::A,
        webstack_dns::Transport::Udp,
        Duration::from_secs(3),
    )
    .await
    .with_context(|| format!("cannot resolve {host} through the stack's DNS server {dns}"))?;
    let Some(ip) = answer.addresses.first() else {
        bail!(
            "the stack's DNS server {dns} has no address for {host} ({})",
            answer.code
        );
    };
    Ok(Target {
        addr: SocketAddr::new(*ip, port),
        host,
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://www.foobar.com:8080/api/messages").unwrap(),
            ("www.foobar.com".into(), Some(8080), "/api/messages".into())
        );
        assert_eq!(
            parse_url("http://127.0.0.1").unwrap(),
            ("127.0.0.1".into(), None, "/".into())
        );
        assert!(parse_url("https://x/").is_err());
        assert!(parse_url("http://x:notaport/").is_err());
    }
}
