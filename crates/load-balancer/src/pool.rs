//! The backends of one load balancer and their shared state: health, admin state,
//! requests in flight, counters. Selection and the in-flight count change together under
//! one lock, so maxconn holds exactly.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;
use webstack_topology::{Algorithm, WhenAllDown};

use crate::health::{HealthState, Transition};
use crate::selection::{Candidate, Selector};

/// A backend as the load balancer is told it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    pub name: String,
    /// Plain HTTP (health checks; traffic too unless `tls_addr` is set).
    pub addr: SocketAddr,
    /// The backend's TLS port: http mode re-encrypts traffic to it, tcp mode passes the
    /// client's TLS through to it.
    pub tls_addr: Option<SocketAddr>,
    pub weight: u32,
    pub backup: bool,
}

/// What an operator set (`webstack lb set SERVER STATE`), as HAProxy's admin states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminState {
    /// Takes traffic when healthy.
    Ready,
    /// No new requests; those in flight finish.
    Drain,
    /// No traffic and no health checks.
    Maint,
}

impl AdminState {
    pub fn parse(s: &str) -> Option<AdminState> {
        match s.trim() {
            "ready" => Some(AdminState::Ready),
            "drain" => Some(AdminState::Drain),
            "maint" | "maintenance" => Some(AdminState::Maint),
            _ => None,
        }
    }
}

/// Upper bounds of the response-time histogram, in seconds (Prometheus' defaults).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counters of one backend. Atomics: bumped on the request path without a lock.
#[derive(Default)]
pub struct BackendStats {
    pub requests: AtomicU64,
    /// Responses by class: 1xx to 5xx.
    pub responses: [AtomicU64; 5],
    pub connect_errors: AtomicU64,
    pub response_errors: AtomicU64,
    pub timeouts: AtomicU64,
    pub retries: AtomicU64,
    pub went_up: AtomicU64,
    pub went_down: AtomicU64,
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    pub latency_count: AtomicU64,
    pub latency_micros: AtomicU64,
}

impl BackendStats {
    pub fn record_response(&self, status: u16, took: Duration) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

struct BackendState {
    health: HealthState,
    admin: AdminState,
    last_check: String,
    last_change: Instant,
}

pub struct Backend {
    pub config: BackendConfig,
    pub active: AtomicU32,
    pub stats: BackendStats,
    state: Mutex<BackendState>,
}

/// A backend's state for the stats page and `webstack lb status`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendSnapshot {
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    pub up: bool,
    pub admin: AdminState,
    pub active: u32,
    pub requests: u64,
    pub responses: [u64; 5],
    pub connect_errors: u64,
    pub response_errors: u64,
    pub timeouts: u64,
    pub retries: u64,
    pub went_up: u64,
    pub went_down: u64,
    pub last_check: String,
    pub seconds_in_state: f64,
}

/// Why no backend could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoBackend {
    /// None is up and ready (or every one was tried already).
    NoneAvailable,
    /// Some are up but all at their maxconn, and the queue wait ran out.
    QueueTimeout,
}

pub struct BackendPool {
    pub backends: Vec<Backend>,
    selector: Mutex<Selector>,
    maxconn: Option<u32>,
    when_all_down: WhenAllDown,
    rise: u32,
    fall: u32,
    released: Notify,
}

impl std::fmt::Debug for BackendPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.backends.iter().map(|b| &b.config.name))
            .finish()
    }
}

/// A backend taken for one request or connection; gives it back when dropped.
pub struct Lease {
    pool: Arc<BackendPool>,
    pub index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.backends[self.index]
            .active
            .fetch_sub(1, Ordering::AcqRel);
        self.pool.released.notify_waiters();
    }
}

impl Lease {
    pub fn backend(&self) -> &Backend {
        &self.pool.backends[self.index]
    }
}

impl BackendPool {
    pub fn new(
        backends: Vec<BackendConfig>,
        algorithm: Algorithm,
        maxconn: Option<u32>,
        when_all_down: WhenAllDown,
        rise: u32,
        fall: u32,
    ) -> BackendPool {
        let n = backends.len();
        BackendPool {
            backends: backends
                .into_iter()
                .map(|config| Backend {
                    config,
                    active: AtomicU32::new(0),
                    stats: BackendStats::default(),
                    state: Mutex::new(BackendState {
                        health: HealthState::default(),
                        admin: AdminState::Ready,
                        last_check: "not checked yet".into(),
                        last_change: Instant::now(),
                    }),
                })
                .collect(),
            selector: Mutex::new(Selector::new(algorithm, n)),
            maxconn,
            when_all_down,
            rise,
            fall,
            released: Notify::new(),
        }
    }

    /// Takes over what `previous` (the pool of the instance a reload replaces) knows of
    /// the backends both have (same name and address): health and admin state, so a
    /// reload neither sends traffic to a backend known down nor waits for checks to find
    /// the others up (HAProxy keeps them across a reload with `load-server-state-from-file`).
    /// A backend the reload added starts down and takes traffic once `rise` checks pass
    /// (HAProxy's `init-state down`): it may not be running yet.
    pub fn inherit(&self, previous: &BackendPool) {
        for b in &self.backends {
            let Some(old) = previous
                .backends
                .iter()
                .find(|o| o.config.name == b.config.name && o.config.addr == b.config.addr)
            else {
                let mut s = b.state.lock().expect("backend lock");
                s.health = HealthState::down();
                s.last_check = "added by a reload: in service after its health checks pass".into();
                continue;
            };
            let from = old.state.lock().expect("backend lock");
            let mut to = b.state.lock().expect("backend lock");
            to.health = from.health.clone();
            to.admin = from.admin;
            to.last_check = from.last_check.clone();
            to.last_change = from.last_change;
        }
    }

    /// Takes a backend for a request from `client`, skipping those in `exclude` (already
    /// tried for this request). Waits up to `queue` while every candidate is at maxconn.
    pub async fn acquire(
        self: &Arc<Self>,
        client: IpAddr,
        exclude: &[usize],
        queue: Duration,
    ) -> Result<Lease, NoBackend> {
        let deadline = tokio::time::Instant::now() + queue;
        loop {
            let released = self.released.notified();
            match self.try_acquire(client, exclude) {
                Ok(lease) => return Ok(lease),
                Err(NoBackend::QueueTimeout) => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(NoBackend::QueueTimeout);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: `QueueTimeout` here means "all busy, worth waiting".
    fn try_acquire(
        self: &Arc<Self>,
        client: IpAddr,
        exclude: &[usize],
    ) -> Result<Lease, NoBackend> {
        let mut selector = self.selector.lock().expect("selector lock");
        let mut candidates: Vec<Candidate<'_>> = Vec::with_capacity(self.backends.len());
        let mut any_up = false;
        for (i, b) in self.backends.iter().enumerate() {
            let (up, admin) = {
                let s = b.state.lock().expect("backend lock");
                (s.health.is_up(), s.admin)
            };
            let usable = admin == AdminState::Ready && !exclude.contains(&i);
            any_up |= up && usable;
            let active = b.active.load(Ordering::Acquire);
            // `eligible` is settled below, once it is known whether any backend is up.
            candidates.push(Candidate {
                name: &b.config.name,
                weight: b.config.weight,
                active,
                eligible: usable && up,
                backup: b.config.backup,
            });
        }
        // Fail-open: with every backend down, try the ready ones anyway rather than
        // refuse; a health check can be wrong where real traffic is not.
        let fail_open = !any_up && self.when_all_down == WhenAllDown::FailOpen;
        let mut busy = false;
        for (i, c) in candidates.iter_mut().enumerate() {
            let usable = c.eligible || (fail_open && self.is_ready(i) && !exclude.contains(&i));
            let below_max = self.maxconn.is_none_or(|m| c.active < m);
            busy |= usable && !below_max;
            c.eligible = usable && below_max;
        }
        match selector.pick(&candidates, client) {
            Some(index) => {
                self.backends[index].active.fetch_add(1, Ordering::AcqRel);
                self.backends[index]
                    .stats
                    .requests
                    .fetch_add(1, Ordering::Relaxed);
                Ok(Lease {
                    pool: self.clone(),
                    index,
                })
            }
            None if busy => Err(NoBackend::QueueTimeout),
            None => Err(NoBackend::NoneAvailable),
        }
    }

    fn is_ready(&self, index: usize) -> bool {
        self.backends[index]
            .state
            .lock()
            .expect("backend lock")
            .admin
            == AdminState::Ready
    }

    /// Records an active check's result.
    pub fn observe_check(&self, index: usize, passed: bool, detail: String) {
        let b = &self.backends[index];
        let mut s = b.state.lock().expect("backend lock");
        let t = s.health.observe(passed, self.rise, self.fall);
        self.note_transition(b, &mut s, t, &format!("health check: {detail}"));
        s.last_check = detail;
    }

    /// Passive ejection after live traffic failed to connect.
    pub fn eject(&self, index: usize, reason: &str) {
        let b = &self.backends[index];
        let mut s = b.state.lock().expect("backend lock");
        let t = s.health.eject();
        self.note_transition(b, &mut s, t, &format!("ejected by live traffic: {reason}"));
    }

    /// Counts and logs a health change; `why` says what caused it.
    fn note_transition(&self, b: &Backend, s: &mut BackendState, t: Option<Transition>, why: &str) {
        match t {
            Some(Transition::Up) => {
                b.stats.went_up.fetch_add(1, Ordering::Relaxed);
                s.last_change = Instant::now();
                eprintln!("load balancer: backend {} is UP ({why})", b.config.name);
                self.released.notify_waiters();
            }
            Some(Transition::Down) => {
                b.stats.went_down.fetch_add(1, Ordering::Relaxed);
                s.last_change = Instant::now();
                eprintln!("load balancer: backend {} is DOWN ({why})", b.config.name);
            }
            None => {}
        }
    }

    pub fn is_maint(&self, index: usize) -> bool {
        self.backends[index]
            .state
            .lock()
            .expect("backend lock")
            .admin
            == AdminState::Maint
    }

    /// Changes a backend's admin state at runtime; `None` if there is no such backend.
    pub fn set_admin(&self, name: &str, admin: AdminState) -> Option<()> {
        let b = self.backends.iter().find(|b| b.config.name == name)?;
        let mut s = b.state.lock().expect("backend lock");
        if s.admin != admin {
            s.admin = admin;
            s.last_change = Instant::now();
            eprintln!("load balancer: backend {name} set to {admin:?} by an operator");
        }
        drop(s);
        self.released.notify_waiters();
        Some(())
    }

    pub fn snapshot(&self) -> Vec<BackendSnapshot> {
        self.backends
            .iter()
            .map(|b| {
                let s = b.state.lock().expect("backend lock");
                let st = &b.stats;
                BackendSnapshot {
                    name: b.config.name.clone(),
                    address: b.config.addr,
                    weight: b.config.weight,
                    backup: b.config.backup,
                    up: s.health.is_up(),
                    admin: s.admin,
                    active: b.active.load(Ordering::Relaxed),
                    requests: st.requests.load(Ordering::Relaxed),
                    responses: std::array::from_fn(|i| st.responses[i].load(Ordering::Relaxed)),
                    connect_errors: st.connect_errors.load(Ordering::Relaxed),
                    response_errors: st.response_errors.load(Ordering::Relaxed),
                    timeouts: st.timeouts.load(Ordering::Relaxed),
                    retries: st.retries.load(Ordering::Relaxed),
                    went_up: st.went_up.load(Ordering::Relaxed),
                    went_down: st.went_down.load(Ordering::Relaxed),
                    last_check: s.last_check.clone(),
                    seconds_in_state: s.last_change.elapsed().as_secs_f64(),
                }
            })
            .collect()
    }
}
