//! Where `webstack bench` and `webstack chaos` send their requests: a URL whose host is
//! resolved through the stack's own DNS server, as a browser pointed at the stack would.
//! Without a URL, the site's entry: its HTTPS port when it has one.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use webstack_topology::Design;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// HTTPS.
    pub tls: bool,
}

/// A URL's host, port (if given) and path.
type Parts = (String, Option<u16>, String);

/// Splits `http://host[:port][/path]` or `https://…`.
pub fn parse_url(url: &str) -> Result<Parts> {
    Ok(parse(url)?.0)
}

/// The URL's parts, and whether it is HTTPS.
fn parse(url: &str) -> Result<(Parts, bool)> {
    let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        _ => bail!("{url:?} is not an http:// or https:// URL"),
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
    Ok(((host, port, path), tls))
}

/// The target for `url` (or, without one, the design's entry point): an IP host is taken
/// as it is; a name is asked of the stack's DNS server.
pub async fn resolve(design: &Design, url: Option<&str>) -> Result<Target> {
    let (entry_host, entry) = design
        .entry_point()
        .context("the design has no www record to send requests to")?;
    let ((host, port, path), tls) = match url {
        Some(u) => parse(u)?,
        None => match entry_tls_port(design, entry) {
            Some(p) => ((entry_host, Some(p), "/".to_string()), true),
            None => ((entry_host, Some(entry.port()), "/".to_string()), false),
        },
    };
    let port = port.unwrap_or(if tls { 443 } else { 80 });
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Target {
            addr: SocketAddr::new(ip, port),
            host,
            path,
            tls,
        });
    }
    // Each name server of the zone in turn, as a resolver tries the NS set: a secondary
    // answers while the primary is down.
    let mut answer = None;
    let mut failures = Vec::new();
    for (name, ip) in design.dns.name_servers() {
        let dns = SocketAddr::new(ip, design.dns.port);
        match webstack_dns::query(
            dns,
            &format!("{host}."),
            webstack_dns::RecordType::A,
            webstack_dns::Transport::Udp,
            Duration::from_secs(2),
        )
        .await
        {
            Ok(a) if a.code != webstack_dns::ResponseCode::ServFail => {
                answer = Some((dns, a));
                break;
            }
            Ok(a) => failures.push(format!("{name} ({dns}): {}", a.code)),
            Err(e) => failures.push(format!("{name} ({dns}): {e}")),
        }
    }
    let Some((dns, answer)) = answer else {
        bail!(
            "cannot resolve {host} through the stack's name servers: {}",
            failures.join("; ")
        );
    };
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
        tls,
    })
}

/// The HTTPS port of the server (or floating IP member) behind the site's entry.
fn entry_tls_port(design: &Design, entry: SocketAddr) -> Option<u16> {
    let server = design
        .servers
        .iter()
        .find(|s| s.address == entry.ip())
        .or_else(|| {
            let f = design
                .floating_ips
                .iter()
                .find(|f| f.address == entry.ip())?;
            design.server(f.servers.first()?)
        })?;
    server
        .load_balancer
        .as_ref()
        .and_then(|lb| lb.tls.as_ref())
        .or_else(|| server.web.as_ref().and_then(|w| w.tls.as_ref()))
        .map(|t| t.port)
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
        assert_eq!(
            parse("https://www.foobar.com:8443/").unwrap(),
            (("www.foobar.com".into(), Some(8443), "/".into()), true)
        );
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("http://x:notaport/").is_err());
    }
}
