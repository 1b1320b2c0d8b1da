//! HTTP metrics a component records per request and the agent exposes: requests by
//! method, status class and route template (never raw paths: they would make a series per
//! URL), and a latency histogram per route. One set per node, shared by its components
//! (the `component` label tells them apart), kept between scrapes. Once the agent ships
//! to a collector, each request also becomes an access record, and each 5xx a span of
//! its error trace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use webstack_net::http::Failure;
use webstack_net::trace::TraceContext;

use crate::outbox::Outbox;
use crate::wire::{LogRecord, Record, SpanRecord};

type Labels = Vec<(&'static str, String)>;
/// component, method, status class, route.
type RequestKey = (&'static str, &'static str, &'static str, &'static str);

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

#[derive(Clone)]
pub struct HttpMetrics {
    server: String,
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<Labels, Counter>,
    upstream_retries: Family<Labels, Counter>,
    /// The request counter and latency histogram of each label set seen so far, so that
    /// a request neither builds label strings nor hashes them into the families again.
    handles: Arc<Mutex<HashMap<RequestKey, (Counter, Histogram)>>>,
    outbox: Arc<OnceLock<Arc<Outbox>>>,
    sampler: Arc<Sampler>,
}

/// At most `limit` access records of requests that did not fail per second (0: no
/// limit); the rest are counted. A request's metrics count it either way.
#[derive(Default)]
struct Sampler {
    limit: AtomicU64,
    second: AtomicU64,
    taken: AtomicU64,
    skipped: AtomicU64,
}

impl Sampler {
    fn take(&self, now: f64) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        if limit == 0 {
            return true;
        }
        let second = now as u64;
        if self.second.swap(second, Ordering::Relaxed) != second {
            self.taken.store(0, Ordering::Relaxed);
        }
        if self.taken.fetch_add(1, Ordering::Relaxed) < limit {
            true
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// A request a component has started to answer: what its record will need.
pub struct InFlight {
    started: Instant,
    method: String,
    target: String,
    request_id: String,
    trace: TraceContext,
}

impl InFlight {
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The request is answered: counted, timed, logged and (if it failed) traced.
    pub fn finish<B>(
        &self,
        metrics: &HttpMetrics,
        component: &'static str,
        route: &'static str,
        resp: &hyper::Response<B>,
    ) {
        metrics.request(&RequestRecord {
            component,
            method: &self.method,
            target: &self.target,
            status: resp.status().as_u16(),
            route,
            started: self.started,
            request_id: &self.request_id,
            trace: &self.trace,
            failure: resp.extensions().get::<Failure>(),
        });
    }
}

/// One answered request, as a component saw it.
pub(crate) struct RequestRecord<'a> {
    /// `web`, `load_balancer`, `app`.
    pub component: &'static str,
    pub method: &'a str,
    /// The request target (logged; never a label).
    pub target: &'a str,
    pub status: u16,
    /// The route template (`static`, `app`, `health`, …): the label.
    pub route: &'static str,
    pub started: Instant,
    pub request_id: &'a str,
    pub trace: &'a TraceContext,
    /// Why this hop answered 5xx itself (from the response's [`Failure`]).
    pub failure: Option<&'a Failure>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl HttpMetrics {
    pub fn new(server: &str) -> HttpMetrics {
        HttpMetrics {
            server: server.to_string(),
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            upstream_errors: Family::default(),
            upstream_retries: Family::default(),
            handles: Arc::default(),
            outbox: Arc::new(OnceLock::new()),
            sampler: Arc::default(),
        }
    }

    /// Access records of requests that did not fail, per second at most (0: every one).
    pub fn limit_access_records(&self, per_second: u32) {
        self.sampler
            .limit
            .store(u64::from(per_second), Ordering::Relaxed);
    }

    /// Access records left unsent by the limit.
    pub fn access_records_skipped(&self) -> u64 {
        self.sampler.skipped.load(Ordering::Relaxed)
    }

    /// A proxy's upstream failed: `connect`, `response` (lost while answering) or
    /// `timeout`.
    pub fn upstream_error(&self, component: &str, upstream: &str, kind: &str) {
        let l: Labels = vec![
            ("server", self.server.clone()),
            ("component", component.to_string()),
            ("upstream", upstream.to_string()),
            ("kind", kind.to_string()),
        ];
        self.upstream_errors.get_or_create(&l).inc();
    }

    /// A proxy tried a request again on another upstream.
    pub fn upstream_retry(&self, component: &str) {
        let l: Labels = vec![
            ("server", self.server.clone()),
            ("component", component.to_string()),
        ];
        self.upstream_retries.get_or_create(&l).inc();
    }

    /// From now on, requests also go to the collector as records.
    pub fn ship_to(&self, outbox: Arc<Outbox>) {
        let _ = self.outbox.set(outbox);
    }

    /// A line of the server's own log, sent on as a record.
    pub fn log(&self, component: &str, level: &str, message: &str) {
        if let Some(outbox) = self.outbox.get() {
            outbox.push(Record::Log(LogRecord {
                at: crate::ship::now(),
                server: self.server.clone(),
                component: component.to_string(),
                level: level.to_string(),
                message: message.to_string(),
                request_id: None,
            }));
        }
    }

    /// Starts the record of a request: its id (kept, or made and written into the
    /// request so every later hop sees it) and this hop's span of its trace (the request's
    /// `traceparent` now names this hop as the parent).
    pub fn begin<B>(&self, req: &mut hyper::Request<B>) -> InFlight {
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string(), |p| p.to_string());
        InFlight {
            started: Instant::now(),
            method: req.method().as_str().to_string(),
            target,
            request_id: webstack_net::http::ensure_request_id(req.headers_mut()),
            trace: TraceContext::enter(req.headers_mut()),
        }
    }

    /// A request: counted, timed, and (with a collector) logged and, when it failed,
    /// traced.
    pub(crate) fn request(&self, r: &RequestRecord<'_>) {
        let seconds = r.started.elapsed().as_secs_f64();
        self.record(r.component, r.method, r.status, r.route, seconds);
        let Some(outbox) = self.outbox.get() else {
            return;
        };
        let now = crate::ship::now();
        let at = now - seconds;
        let level = match r.status {
            500.. => "error",
            400.. => "warning",
            _ => "info",
        };
        if r.status >= 400 || self.sampler.take(now) {
            outbox.push(Record::Log(LogRecord {
                at,
                server: self.server.clone(),
                component: r.component.to_string(),
                level: level.to_string(),
                message: format!(
                    "{} {} {} {:.1}ms",
                    r.method,
                    r.target,
                    r.status,
                    seconds * 1000.0
                ),
                request_id: Some(r.request_id.to_string()),
            }));
        }
        // Health checks that fail are the checker's business (BackendDown), not a request
        // that failed a user: they are logged, not traced.
        if r.status >= 500 && r.route != "health" {
            outbox.push(Record::Span(SpanRecord {
                at,
                duration_ms: seconds * 1000.0,
                trace_id: r.trace.trace_id.clone(),
                span_id: r.trace.span_id.clone(),
                parent_id: r.trace.parent_id.clone(),
                request_id: r.request_id.to_string(),
                server: self.server.clone(),
                component: r.component.to_string(),
                method: r.method.to_string(),
                target: r.target.to_string(),
                status: r.status,
                error: r.failure.map(|f| f.0.to_string()),
            }));
        }
    }

    /// One answered request of `component` (`web`, `load_balancer`, `app`) on `route`
    /// (`static`, `app`, `health`, …).
    pub fn record(
        &self,
        component: &'static str,
        method: &str,
        status: u16,
        route: &'static str,
        seconds: f64,
    ) {
        let method = match method {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        let key = (component, method, class, route);
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        let (requests, duration) = handles.entry(key).or_insert_with(|| {
            let requests: Labels = vec![
                ("server", self.server.clone()),
                ("component", component.to_string()),
                ("method", method.to_string()),
                ("status", class.to_string()),
                ("route", route.to_string()),
            ];
            let duration: Labels = vec![
                ("server", self.server.clone()),
                ("component", component.to_string()),
                ("route", route.to_string()),
            ];
            (
                self.requests.get_or_create(&requests).clone(),
                self.duration.get_or_create(&duration).clone(),
            )
        });
        requests.inc();
        duration.observe(seconds);
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, status class and route template",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            self.duration.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failures of a proxy's upstreams, by kind (connect, response, timeout)",
            self.upstream_errors.clone(),
        );
        registry.register(
            "upstream_retries",
            "Requests a proxy sent again to another upstream",
            self.upstream_retries.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_route_and_buckets_latency() {
        let m = HttpMetrics::new("s1");
        m.record("web", "GET", 200, "static", 0.0002);
        m.record("web", "GET", 204, "static", 0.0002);
        m.record("web", "BREW", 502, "app", 0.5);
        let mut registry = Registry::with_prefix("webstack");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains(r#"webstack_http_requests_total{server="s1",component="web",method="GET",status="2xx",route="static"} 2"#), "{text}");
        assert!(
            text.contains(r#"method="other",status="5xx",route="app"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"webstack_http_request_duration_seconds_count{server="s1",component="web",route="app"} 1"#), "{text}");
    }
}
