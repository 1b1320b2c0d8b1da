//! The TLS endpoints of a server (a load balancer's or web server's `tls`): the
//! certificate each one serves, from the stack's local CA or from files named in the
//! design, renewed or reloaded while the endpoint runs, without a restart and without
//! dropping open connections (the rustls configuration stays; only the certificate it
//! resolves is swapped).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use webstack_net::http::{AcmeChallenges, Https};
use webstack_tls::{check_pair, load_pair, renew_at, LoadedPair, LocalCa, ReloadableCert};
use webstack_topology::{CertificateSource, Design, Server, Tls};

use crate::status::{CertificateStatus, StatusFile};
use crate::NodeOptions;

/// How often certificate files named in the design are looked at for a replacement.
const FILE_WATCH: Duration = Duration::from_secs(2);

/// The names a certificate of this site must cover: every name of the zone's A records.
pub fn site_names(design: &Design) -> Vec<String> {
    let mut names: Vec<String> = design
        .dns
        .records
        .iter()
        .map(|r| {
            if r.name == "@" {
                design.domain.clone()
            } else {
                format!("{}.{}", r.name, design.domain)
            }
        })
        .collect();
    names.dedup();
    names
}

/// Binds the endpoint's listener, gets its first certificate, and keeps the certificate
/// current in a task of the node; `kind` is the component it belongs to, for the status.
pub fn start_endpoint(
    opts: &NodeOptions,
    server: &Server,
    kind: &str,
    tls: &Tls,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<Https> {
    let addr = SocketAddr::new(server.address, tls.port);
    let listener = crate::firewall::bind(addr)?;
    let names = site_names(&opts.design);
    let challenges = Arc::new(AcmeChallenges::default());
    let source = CertSource::new(opts, server, tls, &names, &challenges)?;
    let first = source.first(opts, server)?;
    let cert = ReloadableCert::new(first.certified.clone());
    let config = webstack_tls::server_config(cert.clone())?;
    let report = Report {
        status: status.clone(),
        kind: kind.to_string(),
        listen: addr,
        source: source.label(),
    };
    report.serving(&first);
    eprintln!(
        "{kind}: HTTPS on {addr} with a certificate from {} for {} (until {})",
        source.label(),
        first.info.names.join(", "),
        unix(first.info.not_after)
    );
    let shutdown = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = keep_current(source, first, cert, report) => {}
        }
        Ok(())
    });
    Ok(Https {
        listener,
        tls: config,
        hsts_max_age: tls.hsts_max_age,
        redirect_http: tls.redirect_http,
        acme: Some(challenges),
    })
}

/// Where an endpoint's certificates come from.
enum CertSource {
    Local {
        ca: Box<LocalCa>,
        names: Vec<String>,
        ips: Vec<std::net::IpAddr>,
    },
    Files {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
        names: Vec<String>,
    },
    Acme {
        settings: webstack_tls::AcmeSettings,
        names: Vec<String>,
        challenges: Arc<AcmeChallenges>,
    },
}

impl CertSource {
    fn new(
        opts: &NodeOptions,
        server: &Server,
        tls: &Tls,
        names: &[String],
        challenges: &Arc<AcmeChallenges>,
    ) -> Result<CertSource> {
        Ok(match &tls.certificate {
            CertificateSource::LocalCa => CertSource::Local {
                ca: Box::new(LocalCa::load_or_create(
                    &opts.layout.tls_dir(),
                    &opts.design.name,
                    &opts.design.domain,
                )?),
                names: names.to_vec(),
                // A member of a floating IP serves on that address too while it holds it.
                ips: std::iter::once(server.address)
                    .chain(opts.design.floating_ip_of(&server.name).map(|f| f.address))
                    .collect(),
            },
            CertificateSource::Files { cert, key } => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
                names: names.to_vec(),
            },
            CertificateSource::Acme {
                directory,
                root_ca,
                email,
            } => CertSource::Acme {
                settings: webstack_tls::AcmeSettings {
                    directory: directory.clone(),
                    root_ca: root_ca.clone(),
                    email: email.clone(),
                    account_file: webstack_tls::account_file(&opts.layout.server_dir(&server.name)),
                },
                names: names.to_vec(),
                challenges: challenges.clone(),
            },
        })
    }

    fn label(&self) -> String {
        match self {
            CertSource::Local { .. } => "local CA".into(),
            CertSource::Files { .. } => "files".into(),
            CertSource::Acme { settings, .. } => format!("ACME ({})", settings.directory),
        }
    }

    /// The certificate to start with. An ACME order needs the site's HTTP port to be
    /// served already (the validation request comes to it), so an ACME endpoint starts
    /// with a leaf of the stack's CA and swaps in the ordered one as soon as it arrives.
    fn first(&self, opts: &NodeOptions, server: &Server) -> Result<LoadedPair> {
        match self {
            CertSource::Acme { names, .. } => {
                let ca = LocalCa::load_or_create(
                    &opts.layout.tls_dir(),
                    &opts.design.name,
                    &opts.design.domain,
                )?;
                issue_from(&ca, names, &[server.address])
            }
            CertSource::Local { ca, names, ips } => issue_from(ca, names, ips),
            CertSource::Files { cert, key, names } => {
                Ok(load_pair(cert, key, names, SystemTime::now())?)
            }
        }
    }

    /// A certificate to serve now: a new leaf from the CA, the files as they are, or a
    /// new order from the ACME server.
    async fn fetch(&self) -> Result<LoadedPair> {
        match self {
            CertSource::Local { ca, names, ips } => issue_from(ca, names, ips),
            CertSource::Files { cert, key, names } => {
                Ok(load_pair(cert, key, names, SystemTime::now())?)
            }
            CertSource::Acme {
                settings,
                names,
                challenges,
            } => {
                let publish = |token: &str, key: Option<&str>| challenges.set(token, key);
                let ordered = webstack_tls::acme_order(settings, names, &publish).await?;
                let path = std::path::Path::new(&settings.directory);
                Ok(check_pair(
                    ordered.chain_pem.as_bytes(),
                    ordered.key_pem.as_bytes(),
                    path,
                    path,
                    names,
                    SystemTime::now(),
                )?)
            }
        }
    }

    /// When to look again: at the renewal time of a CA leaf; every few seconds for files,
    /// which are replaced from outside.
    fn next_check(&self, serving: &LoadedPair, ordered: bool) -> Duration {
        match self {
            CertSource::Acme { .. } if !ordered => Duration::ZERO,
            CertSource::Local { .. } | CertSource::Acme { .. } => {
                renew_at(serving.info.not_before, serving.info.not_after)
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            }
            CertSource::Files { .. } => FILE_WATCH,
        }
    }

    fn changed(&self, serving: &LoadedPair, candidate: &LoadedPair) -> bool {
        serving.certified.cert != candidate.certified.cert
    }
}

/// Renews (local CA) or reloads (files) the certificate whenever it is due, forever.
async fn keep_current(
    source: CertSource,
    mut serving: LoadedPair,
    cert: Arc<ReloadableCert>,
    report: Report,
) {
    let mut ordered = false;
    loop {
        tokio::time::sleep(source.next_check(&serving, ordered)).await;
        match source.fetch().await {
            Ok(next) if source.changed(&serving, &next) => {
                ordered = true;
                cert.replace(next.certified.clone());
                report.serving(&next);
                eprintln!(
                    "{}: new certificate on {} from {}, valid until {}",
                    report.kind,
                    report.listen,
                    report.source,
                    unix(next.info.not_after)
                );
                serving = next;
            }
            Ok(_) => {}
            Err(e) => {
                // A half-written or broken replacement is not served; the one in use
                // stays until a good one arrives. Said once per change of the error.
                eprintln!(
                    "{}: keeping the current certificate on {}: {e:#}",
                    report.kind, report.listen
                );
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    }
}

/// Writes what an endpoint serves into the node's status.
struct Report {
    status: Arc<StatusFile>,
    kind: String,
    listen: SocketAddr,
    source: String,
}

impl Report {
    fn serving(&self, pair: &LoadedPair) {
        self.status.set_certificate(
            &self.kind,
            CertificateStatus {
                listen: self.listen,
                source: self.source.clone(),
                names: pair.info.names.clone(),
                issuer: pair.info.issuer.clone(),
                not_after: unix(pair.info.not_after),
                renew_at: unix(renew_at(pair.info.not_before, pair.info.not_after)),
            },
        );
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks every certificate file a design names, as `validate` and `up` do before
/// anything starts: each problem names the file and says what is wrong.
pub fn check_certificate_files(design: &Design) -> Vec<String> {
    let names = site_names(design);
    let mut problems = Vec::new();
    for server in &design.servers {
        let endpoints = [
            (
                "load_balancer",
                server.load_balancer.as_ref().and_then(|l| l.tls.as_ref()),
            ),
            ("web", server.web.as_ref().and_then(|w| w.tls.as_ref())),
        ];
        for (kind, tls) in endpoints {
            let Some(Tls {
                certificate: CertificateSource::Files { cert, key },
                ..
            }) = tls
            else {
                continue;
            };
            if let Err(e) = load_pair(cert, key, &names, SystemTime::now())
                .with_context(|| format!("servers.{}.{kind}.tls", server.name))
            {
                problems.push(format!("{e:#}"));
            }
        }
    }
    problems
}

fn issue_from(ca: &LocalCa, names: &[String], ips: &[std::net::IpAddr]) -> Result<LoadedPair> {
    let issued = ca.issue(names, ips, webstack_tls::LEAF_LIFETIME)?;
    Ok(check_pair(
        issued.chain_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        ca.cert_path(),
        ca.cert_path(),
        names,
        SystemTime::now(),
    )?)
}

/// What a load balancer trusts when it re-encrypts to its backends' TLS ports: the
/// stack's CA (which issues local and stop-gap certificates) and the last certificate of
/// each backend's certificate file (its issuer). ACME-issued backends are trusted through
/// the stack's CA only until their order completes; use local CA certificates between
/// tiers.
pub fn backend_roots(
    opts: &NodeOptions,
    design: &webstack_topology::Design,
    lb: &webstack_topology::LoadBalancer,
) -> Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject;
    let tls_backends: Vec<&Tls> = lb
        .backends
        .iter()
        .filter_map(|b| design.server(&b.server)?.web.as_ref()?.tls.as_ref())
        .collect();
    if tls_backends.is_empty() || lb.mode != webstack_topology::LbMode::Http {
        return Ok(Vec::new());
    }
    let ca = LocalCa::load_or_create(
        &opts.layout.tls_dir(),
        &opts.design.name,
        &opts.design.domain,
    )?;
    let mut roots: Vec<Vec<u8>> =
        rustls_pki_types::CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes())
            .filter_map(|c| c.ok())
            .map(|c| c.to_vec())
            .collect();
    for tls in tls_backends {
        if let CertificateSource::Files { cert, .. } = &tls.certificate {
            let text =
                std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
            if let Some(last) = rustls_pki_types::CertificateDer::pem_slice_iter(&text)
                .filter_map(|c| c.ok())
                .last()
            {
                roots.push(last.to_vec());
            }
        }
    }
    Ok(roots)
}
