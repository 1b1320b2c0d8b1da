//! The load generator behind `webstack bench`: N keep-alive connections, bounded by a
//! request count or a duration, latency in an HDR histogram, errors by kind, and the
//! share of responses each backend served (from the `X-Served-By` header).
//!
//! Architecture invariant: it sends traffic only to loopback addresses, and always stops
//! by itself (a request count or a duration, each with a hard ceiling).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// Hard ceilings, whatever the command line asks.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
pub const MAX_REQUESTS: u64 = 10_000_000;
pub const MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, Clone, Copy)]
pub enum Limit {
    Requests(u64),
    Duration(Duration),
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Where to connect: a loopback address.
    pub target: SocketAddr,
    /// The Host header (the name the URL had).
    pub host: String,
    pub path: String,
    pub method: String,
    pub body: Option<Bytes>,
    pub connections: usize,
    pub limit: Limit,
    /// Per request, from sending to the whole response.
    pub timeout: Duration,
    /// A refused connection is tried once more after this long (a client that rides out
    /// a floating IP's takeover); `None`: it counts as a failed request at once.
    pub retry_refused: Option<Duration>,
    /// A fixed request rate (requests per second, over all connections) instead of as
    /// fast as the connections go. Latency is then measured from when each request was
    /// due, not from when it was sent, so a stall shows in every request it delayed (the
    /// coordinated-omission correction of wrk2).
    pub rate: Option<f64>,
    /// HTTPS: the TLS client configuration and the name the certificate must have.
    pub tls: Option<TlsTarget>,
}

/// How to speak TLS to an HTTPS target.
#[derive(Clone)]
pub struct TlsTarget {
    pub config: Arc<rustls::ClientConfig>,
    pub server_name: String,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsTarget({})", self.server_name)
    }
}

impl TlsTarget {
    /// Trusts the certificates in the PEM file `ca` (a stack's own CA, or the issuer of
    /// the site's certificate), for `server_name`; HTTP/1.1 by ALPN.
    pub fn trusting(ca: &std::path::Path, server_name: &str) -> Result<TlsTarget, BenchError> {
        use rustls_pki_types::pem::PemObject;
        let bad = |why: String| BenchError::BadArgument(format!("{}: {why}", ca.display()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| bad(format!("cannot read it ({e})")))?
        {
            let cert = cert.map_err(|e| bad(format!("not a PEM certificate ({e})")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a usable CA certificate ({e})")))?;
        }
        if roots.is_empty() {
            return Err(bad("holds no certificate".into()));
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        rustls_pki_types::ServerName::try_from(server_name.to_string()).map_err(|_| {
            BenchError::BadArgument(format!("{server_name:?} is not a TLS server name"))
        })?;
        Ok(TlsTarget {
            config: Arc::new(config),
            server_name: server_name.to_string(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0} is not a loopback address: webstack bench only sends traffic to this machine (127.0.0.0/8, ::1)")]
    NotLoopback(std::net::IpAddr),
    #[error("{0}")]
    BadArgument(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub requests: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 3xx: a site behind HTTPS answers its plain port with 308s, which measure
    /// the redirect, not the site.
    pub redirects: u64,
    pub elapsed_secs: f64,
    pub requests_per_sec: f64,
    pub latency_ms: Latency,
    /// Failed requests by kind: `connect`, `io`, `timeout`, `status 5xx`, `status 4xx`.
    pub errors: BTreeMap<String, u64>,
    /// Responses per `X-Served-By` value.
    pub served_by: BTreeMap<String, u64>,
    /// Refused connections tried again (with `retry_refused`), whatever the second try
    /// gave.
    pub retried_connects: u64,
    /// The longest time in which no request succeeded and at least one failed (from the
    /// last success before the failures to the first after): the outage a user saw.
    pub longest_gap_ms: f64,
    /// Responses per release of the app that answered (`X-App-Version`): a rolling
    /// deploy's mixed state.
    pub versions: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

struct Shared {
    started: Instant,
    issued: AtomicU64,
    histogram: Mutex<hdrhistogram::Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
    served_by: Mutex<BTreeMap<String, u64>>,
    ok: AtomicU64,
    redirects: AtomicU64,
    retried: AtomicU64,
    versions: Mutex<BTreeMap<String, u64>>,
    outage: Mutex<Outage>,
}

/// Tracks the longest run of failures with no success in between.
#[derive(Default)]
struct Outage {
    last_ok: Option<Instant>,
    down_since: Option<Instant>,
    longest: Duration,
}

impl Outage {
    fn success(&mut self, at: Instant) {
        if let Some(since) = self.down_since.take() {
            self.longest = self.longest.max(at.saturating_duration_since(since));
        }
        self.last_ok = Some(at);
    }

    fn failure(&mut self, started: Instant) {
        if self.down_since.is_none() {
            self.down_since = Some(self.last_ok.unwrap_or(started));
        }
    }

    /// The longest gap, counting one still open at `end`.
    fn longest(&self, end: Instant) -> Duration {
        self.down_since.map_or(self.longest, |s| {
            self.longest.max(end.saturating_duration_since(s))
        })
    }
}

/// Runs the benchmark and reports. Refuses any target off this machine.
pub async fn run(config: BenchConfig) -> Result<Report, BenchError> {
    if !config.target.ip().is_loopback() {
        return Err(BenchError::NotLoopback(config.target.ip()));
    }
    if config.connections == 0 || config.connections > MAX_CONNECTIONS {
        return Err(BenchError::BadArgument(format!(
            "--connections must be 1 to {MAX_CONNECTIONS}"
        )));
    }
    let (max_requests, deadline) = match config.limit {
        Limit::Requests(n) if n == 0 || n > MAX_REQUESTS => {
            return Err(BenchError::BadArgument(format!(
                "--requests must be 1 to {MAX_REQUESTS}"
            )))
        }
        Limit::Requests(n) => (n, Instant::now() + MAX_DURATION),
        Limit::Duration(d) if d.is_zero() || d > MAX_DURATION => {
            return Err(BenchError::BadArgument(format!(
                "--duration must be above 0 and at most {MAX_DURATION:?}"
            )))
        }
        Limit::Duration(d) => (MAX_REQUESTS, Instant::now() + d),
    };
    if let Some(rate) = config
        .rate
        .filter(|r| !(r.is_finite() && *r > 0.0 && *r <= 1e7))
    {
        return Err(BenchError::BadArgument(format!(
            "--rate {rate} is not a number of requests per second from above 0 to 10000000"
        )));
    }
    let shared = Arc::new(Shared {
        started: Instant::now(),
        issued: AtomicU64::new(0),
        histogram: Mutex::new(
            hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        ),
        errors: Mutex::new(BTreeMap::new()),
        served_by: Mutex::new(BTreeMap::new()),
        ok: AtomicU64::new(0),
        redirects: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        versions: Mutex::new(BTreeMap::new()),
        outage: Mutex::new(Outage::default()),
    });
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.connections {
        let (config, shared) = (config.clone(), shared.clone());
        workers.spawn(async move { worker(config, shared, max_requests, deadline).await });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let h = shared.histogram.lock().expect("histogram lock").clone();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let errors = shared.errors.lock().expect("errors lock").clone();
    let requests = shared.ok.load(Ordering::Relaxed)
        + shared.redirects.load(Ordering::Relaxed)
        + errors.values().sum::<u64>();
    let served_by = shared.served_by.lock().expect("served lock").clone();
    let versions = shared.versions.lock().expect("versions lock").clone();
    let longest_gap = shared
        .outage
        .lock()
        .expect("outage lock")
        .longest(Instant::now());
    Ok(Report {
        requests,
        ok: shared.ok.load(Ordering::Relaxed),
        redirects: shared.redirects.load(Ordering::Relaxed),
        elapsed_secs: elapsed,
        requests_per_sec: requests as f64 / elapsed.max(1e-9),
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: h.max() as f64 / 1000.0,
        },
        errors,
        served_by,
        retried_connects: shared.retried.load(Ordering::Relaxed),
        longest_gap_ms: longest_gap.as_secs_f64() * 1000.0,
        versions,
    })
}

async fn worker(config: BenchConfig, shared: Arc<Shared>, max_requests: u64, deadline: Instant) {
    let mut sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> = None;
    loop {
        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
        if Instant::now() >= deadline || n >= max_requests {
            return;
        }
        // At a fixed rate, request n is due at start + n / rate; a worker that is behind
        // sends at once, and the time it was behind counts in the latency.
        let due = config
            .rate
            .map(|rate| shared.started + Duration::from_secs_f64(n as f64 / rate));
        if let Some(due) = due {
            if due >= deadline {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            let mut connected = connect(config.target, config.tls.as_ref()).await;
            if let (Err(_), Some(wait)) = (&connected, config.retry_refused) {
                shared.retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                connected = connect(config.target, config.tls.as_ref()).await;
            }
            match connected {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    count(&shared.errors, "connect");
                    shared.failed();
                    // Do not spin on a refused port: a short pause, bounded by the deadline.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("connected above");
        let mut req = Request::builder()
            .method(config.method.as_str())
            .uri(&config.path)
            .header("host", &config.host)
            .header("user-agent", "webstack-bench");
        if config.body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(config.body.clone().unwrap_or_default()))
            .expect("valid request");
        let t0 = due.unwrap_or_else(Instant::now);
        let outcome = tokio::time::timeout(config.timeout, async {
            let resp = s.send_request(req).await?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (served, version) = (header("x-served-by"), header("x-app-version"));
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>((status, served, version))
        })
        .await;
        match outcome {
            Ok(Ok((status, served, version))) => {
                let _ = shared
                    .histogram
                    .lock()
                    .expect("histogram lock")
                    .record(t0.elapsed().as_micros().max(1) as u64);
                if status >= 500 {
                    count(&shared.errors, "status 5xx");
                    shared.failed();
                } else if status >= 400 {
                    count(&shared.errors, "status 4xx");
                } else {
                    if status >= 300 {
                        shared.redirects.fetch_add(1, Ordering::Relaxed);
                    } else {
                        shared.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    shared
                        .outage
                        .lock()
                        .expect("outage lock")
                        .success(Instant::now());
                }
                if let Some(name) = served {
                    count(&shared.served_by, &name);
                }
                if let Some(v) = version {
                    count(&shared.versions, &v);
                }
            }
            Ok(Err(_)) => {
                count(&shared.errors, "io");
                shared.failed();
                sender = None;
            }
            Err(_) => {
                count(&shared.errors, "timeout");
                shared.failed();
                sender = None;
            }
        }
    }
}

impl Shared {
    fn failed(&self) {
        self.outage
            .lock()
            .expect("outage lock")
            .failure(self.started);
    }
}

fn count(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    *map.lock()
        .expect("counter lock")
        .entry(key.to_string())
        .or_insert(0) += 1;
}

/// A keep-alive HTTP/1.1 connection to `target`, over TLS when `tls` says so.
pub async fn connect(
    target: SocketAddr,
    tls: Option<&TlsTarget>,
) -> Result<
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    let stream = tokio::net::TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let Some(tls) = tls else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        return Ok(sender);
    };
    let name = rustls_pki_types::ServerName::try_from(tls.server_name.clone())?;
    let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(name, stream)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The report as text for people.
pub fn render(r: &Report, config: &BenchConfig) -> String {
    let pace = config
        .rate
        .map(|r| format!(" at a fixed {r:.0} req/s (latency from when each request was due)"))
        .unwrap_or_default();
    let mut out = format!(
        "{} {} {}://{}:{}{} via {}: {} connections{pace}\n\
         requests     {} in {:.2}s ({:.0} req/s), {} ok\n\
         latency ms   p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}\n",
        "bench",
        config.method,
        if config.tls.is_some() {
            "https"
        } else {
            "http"
        },
        config.host,
        config.target.port(),
        config.path,
        config.target,
        config.connections,
        r.requests,
        r.elapsed_secs,
        r.requests_per_sec,
        r.ok,
        r.latency_ms.p50,
        r.latency_ms.p90,
        r.latency_ms.p99,
        r.latency_ms.max
    );
    if r.redirects > 0 {
        out.push_str(&format!(
            "redirects    {} answered 3xx: the site redirects (to HTTPS where it has TLS), so these measure the redirect; bench the https:// URL instead\n",
            r.redirects
        ));
    }
    if r.errors.is_empty() {
        out.push_str("errors       none\n");
    } else {
        let list: Vec<String> = r.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        out.push_str(&format!("errors       {}\n", list.join(", ")));
    }
    if r.longest_gap_ms > 0.0 {
        out.push_str(&format!(
            "longest gap  {:.0} ms with no request succeeding\n",
            r.longest_gap_ms
        ));
    }
    if r.versions.len() > 1 {
        let list: Vec<String> = r
            .versions
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        out.push_str(&format!("app versions {}\n", list.join(", ")));
    }
    let total: u64 = r.served_by.values().sum();
    for (name, n) in &r.served_by {
        out.push_str(&format!(
            "served by    {name:<12} {n:>8}  {:>5.1}%\n",
            *n as f64 * 100.0 / total.max(1) as f64
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `GET /` of `target`, `n` requests over `connections`.
    fn get(target: SocketAddr, connections: usize, n: u64) -> BenchConfig {
        BenchConfig {
            target,
            host: "h".into(),
            path: "/".into(),
            method: "GET".into(),
            body: None,
            connections,
            limit: Limit::Requests(n),
            timeout: Duration::from_secs(5),
            retry_refused: None,
            rate: None,
            tls: None,
        }
    }

    #[test]
    fn the_longest_gap_runs_from_the_last_success_to_the_next() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut o = Outage::default();
        o.success(at(10));
        o.failure(t0);
        o.failure(t0);
        o.success(at(60));
        assert_eq!(o.longest(at(100)), Duration::from_millis(50));
        o.failure(t0);
        // Still failing at the end: the open gap counts.
        assert_eq!(o.longest(at(200)), Duration::from_millis(140));
    }

    #[tokio::test]
    async fn refuses_targets_off_this_machine() {
        let config = BenchConfig {
            target: "192.0.2.1:80".parse().unwrap(),
            host: "x".into(),
            path: "/".into(),
            method: "GET".into(),
            body: None,
            connections: 1,
            limit: Limit::Requests(1),
            timeout: Duration::from_secs(1),
            retry_refused: None,
            rate: None,
            tls: None,
        };
        assert!(matches!(run(config).await, Err(BenchError::NotLoopback(_))));
    }

    #[tokio::test]
    async fn counts_requests_exactly_and_records_who_served() {
        let listener = webstack_net::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(webstack_net::http::serve(
            listener,
            Default::default(),
            stop.clone(),
            |_req, _| async {
                hyper::Response::builder()
                    .header("x-served-by", "solo")
                    .body(webstack_net::http::full("ok"))
                    .unwrap()
            },
        ));
        let config = get(addr, 4, 200);
        let r = run(config).await.unwrap();
        assert_eq!((r.requests, r.ok), (200, 200));
        assert_eq!(r.served_by.get("solo"), Some(&200));
        assert!(r.errors.is_empty());
        stop.cancel();
    }

    #[tokio::test]
    async fn at_a_fixed_rate_a_stall_counts_in_every_request_it_delayed() {
        let listener = webstack_net::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        let stop = tokio_util::sync::CancellationToken::new();
        let first = Arc::new(AtomicU64::new(0));
        tokio::spawn(webstack_net::http::serve(
            listener,
            Default::default(),
            stop.clone(),
            move |_req, _| {
                let first = first.clone();
                async move {
                    // The first request stalls 300 ms; the rest are answered at once.
                    if first.fetch_add(1, Ordering::Relaxed) == 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    hyper::Response::new(webstack_net::http::full("ok"))
                }
            },
        ));
        let config = BenchConfig {
            rate: Some(100.0),
            ..get(addr, 1, 50)
        };
        let r = run(config).await.unwrap();
        assert_eq!(r.ok, 50);
        // Requests due every 10 ms during the 300 ms stall waited for it: about 30 of the
        // 50 show it, so the 90th percentile is far above an unstalled answer (which a
        // client timing from the send would report for all but the first).
        assert!(r.latency_ms.p90 >= 100.0, "{:?}", r.latency_ms);
        stop.cancel();
    }
}
