//! HTTP metrics a component records per request and the agent exposes: requests by
//! method, status class and route template (never raw paths: they would make a series per
//! URL), and a latency histogram per route. One set per node, shared by its components
//! (the `component` label tells them apart), kept between scrapes.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

#[derive(Clone)]
pub struct HttpMetrics {
    server: String,
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
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
        }
    }

    /// One answered request of `component` (`web`, `load_balancer`, `app`) on `route`
    /// (`static`, `app`, `health`, …).
    pub fn record(&self, component: &str, method: &str, status: u16, route: &str, seconds: f64) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        let class = match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        let requests: Labels = vec![
            ("server", self.server.clone()),
            ("component", component.to_string()),
            ("method", method.to_string()),
            ("status", class.to_string()),
            ("route", route.to_string()),
        ];
        self.requests.get_or_create(&requests).inc();
        let duration: Labels = vec![
            ("server", self.server.clone()),
            ("component", component.to_string()),
            ("route", route.to_string()),
        ];
        self.duration.get_or_create(&duration).observe(seconds);
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
