//! Delivery to the collector: every `interval` the agent takes a reading of its metrics
//! into the outbox; every tick it sends what the outbox holds, oldest first, in batches,
//! at most `BATCHES_PER_TICK` of them (so a backlog after an outage goes out at a bounded
//! rate instead of flooding the collector), and forgets what the collector acknowledged.
//! What was taken and acknowledged is kept in a small file, so the next run of the agent
//! can say how much a crash lost.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;
use crate::wire::{Ack, Batch, Record};

pub const BATCH: usize = 1000;
pub const BATCHES_PER_TICK: usize = 2;
pub const TICK: Duration = Duration::from_millis(100);

pub struct Agent {
    pub server: String,
    pub run: u64,
    pub outbox: Arc<Outbox>,
    /// Records the collector acknowledged in this run.
    pub delivered: AtomicU64,
    /// What the previous run left unacknowledged.
    pub lost_at_restart: u64,
    state_file: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
struct Saved {
    taken: u64,
    acked: u64,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Agent {
    /// An agent with a buffer of `bound` records. `state_file` holds the counts of the
    /// previous run, read here.
    pub fn new(server: &str, bound: usize, state_file: PathBuf) -> Agent {
        let previous: Saved = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let lost = previous.taken.saturating_sub(previous.acked);
        if lost > 0 {
            eprintln!("monitoring: the agent's previous run ended with {lost} records the collector had not acknowledged; they are lost");
        }
        Agent {
            server: server.to_string(),
            run: webstack_net::http::random_u64(),
            outbox: Arc::new(Outbox::new(bound)),
            delivered: AtomicU64::new(0),
            lost_at_restart: lost,
            state_file,
        }
    }

    fn save(&self) {
        let saved = Saved {
            taken: self.outbox.taken(),
            acked: self.delivered.load(Ordering::Relaxed),
        };
        let tmp = self.state_file.with_extension("tmp");
        if std::fs::write(&tmp, serde_json::to_vec(&saved).expect("plain numbers")).is_ok() {
            let _ = std::fs::rename(&tmp, &self.state_file);
        }
    }

    /// Sends to `collector` (connecting from `local`, the server's own address) until
    /// `shutdown`, then makes one last attempt for what is left.
    pub async fn run(
        self: Arc<Self>,
        collector: SocketAddr,
        local: IpAddr,
        interval: Duration,
        metrics: impl Fn() -> String + Send + 'static,
        shutdown: CancellationToken,
    ) {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let url = format!("http://{collector}/ingest");
        // The counts are saved every tick on their own, since a send can wait up to 5 s
        // for a collector that does not answer.
        let saver = {
            let (agent, shutdown) = (self.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    agent.save();
                    tokio::select! {
                        _ = tokio::time::sleep(TICK) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            })
        };
        let mut next_reading = Instant::now();
        let mut reachable = true;
        let mut retry_at = Instant::now();
        loop {
            let stopping = shutdown.is_cancelled();
            if Instant::now() >= next_reading || stopping {
                self.outbox.push(Record::Metrics {
                    at: now(),
                    text: metrics(),
                });
                next_reading += interval;
            }
            if Instant::now() >= retry_at || stopping {
                for _ in 0..BATCHES_PER_TICK {
                    let (first_seq, records) = self.outbox.peek(BATCH);
                    if records.is_empty() {
                        break;
                    }
                    let batch = Batch {
                        server: self.server.clone(),
                        run: self.run,
                        first_seq,
                        interval_ms: interval.as_millis() as u64,
                        records,
                        dropped: self.outbox.dropped(),
                        lost_at_restart: self.lost_at_restart,
                    };
                    match send(&client, &url, &batch).await {
                        Ok(ack) => {
                            let before = self.outbox.len();
                            self.outbox.ack(ack.through);
                            let gone = before - self.outbox.len();
                            self.delivered.fetch_add(gone as u64, Ordering::Relaxed);
                            if !reachable {
                                reachable = true;
                                eprintln!("monitoring: collector {collector} is back; sending the {} buffered records at up to {} a second", self.outbox.len() + gone, BATCH * BATCHES_PER_TICK * 10);
                            }
                        }
                        Err(e) => {
                            if reachable {
                                reachable = false;
                                eprintln!("monitoring: collector {collector} cannot take records ({e}); buffering up to {} records (held: {})", self.outbox.bound(), self.outbox.len());
                            }
                            retry_at = Instant::now() + Duration::from_secs(1);
                            break;
                        }
                    }
                }
            }
            if stopping {
                let _ = saver.await;
                self.save();
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    batch: &Batch,
) -> Result<Ack, String> {
    let body = serde_json::to_vec(batch).map_err(|e| e.to_string())?;
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| webstack_net::http::root_cause(&e))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("a bad acknowledgement: {e}"))
}
