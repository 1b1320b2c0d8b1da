//! The server's part in its floating IP (`[floating_ips.NAME]`, keepalived's role): the
//! node runs the election (`webstack_vrrp`) over signed UDP heartbeats between the
//! members' own addresses, and while it is master it binds the load balancer's ports on
//! the floating address and hands every connection accepted there to the load balancer
//! (its listeners' side doors). Letting go closes those listeners.
//!
//! Never two holders: a port on the floating address can be bound by one socket only (no
//! SO_REUSEPORT), so a new master that finds the address still held (an old master that
//! is frozen, not dead) keeps trying every 5 ms and holds nothing meanwhile.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures_util::FutureExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use webstack_topology::{FloatingIp, Server};
use webstack_vrrp::{decode, encode, Action, Advert, Election, Heartbeat, ReplayGuard, Settings};

use crate::status::{FloatingStatus, StatusFile};
use crate::NodeOptions;

/// Where the load balancer takes connections accepted on the floating address.
pub struct Door {
    pub port: u16,
    pub tx: mpsc::Sender<(TcpStream, SocketAddr)>,
}

/// A side door for a load balancer listener on `port`: the sender goes to `start`, the
/// receiver to `Listener::with_side_door`.
pub fn door(port: u16) -> (Door, mpsc::Receiver<(TcpStream, SocketAddr)>) {
    let (tx, rx) = mpsc::channel(1024);
    (Door { port, tx }, rx)
}

/// How often a new master tries the floating address's ports while they are still held.
const BIND_RETRY: Duration = Duration::from_millis(5);

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

pub fn start(
    opts: &NodeOptions,
    server: &Server,
    fip: &FloatingIp,
    doors: Vec<Door>,
    status: &Arc<StatusFile>,
    tasks: &mut JoinSet<Result<()>>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let secret = crate::read_secret(&opts.layout.heartbeat_secret())?;
    let me = server.address;
    let heartbeat = SocketAddr::new(me, fip.heartbeat_port);
    let socket = std::net::UdpSocket::bind(heartbeat)
        .with_context(|| format!("cannot bind the heartbeat socket {heartbeat}/udp"))?;
    socket.set_nonblocking(true)?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    let peers: Vec<SocketAddr> = fip
        .servers
        .iter()
        .filter(|s| **s != server.name)
        .filter_map(|s| opts.design.server(s))
        .map(|s| SocketAddr::new(s.address, fip.heartbeat_port))
        .collect();
    let base = fip.priority_of(&server.name).unwrap_or(100);
    let settings = Settings {
        priority: base,
        interval: fip.interval,
        preempt: fip.preempt,
        preempt_delay: fip.preempt_delay,
    };
    eprintln!(
        "floating IP {}: {} with priority {base}, heartbeats every {:?} on {heartbeat}/udp to {}; {}",
        fip.name,
        fip.address,
        fip.interval,
        peers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if fip.preempt {
            format!("preempt after {:?}", fip.preempt_delay)
        } else {
            "nopreempt".into()
        }
    );
    let member = Member {
        name: fip.name.clone(),
        address: fip.address,
        me,
        base,
        track_weight: fip.track_weight,
        notify: fip.notify.clone(),
        secret: secret.into_bytes(),
        socket,
        peers,
        doors: Arc::new(doors),
        status: status.clone(),
        holder: None,
        epoch: Instant::now(),
    };
    let shutdown = shutdown.clone();
    tasks.spawn(async move { member.run(settings, shutdown).await });
    Ok(())
}

struct Member {
    name: String,
    address: IpAddr,
    me: IpAddr,
    base: u8,
    track_weight: u8,
    notify: Option<Vec<String>>,
    secret: Vec<u8>,
    socket: tokio::net::UdpSocket,
    peers: Vec<SocketAddr>,
    doors: Arc<Vec<Door>>,
    status: Arc<StatusFile>,
    /// The task holding the floating address's ports while master, and what tells it
    /// to let go.
    holder: Option<(JoinHandle<()>, CancellationToken)>,
    epoch: Instant,
}

impl Member {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    async fn run(mut self, settings: Settings, shutdown: CancellationToken) -> Result<()> {
        let interval = settings.interval;
        let mut election = Election::new(settings, self.me, self.now());
        let mut guard = ReplayGuard::default();
        let mut buf = vec![0u8; 512];
        let mut next_track = Instant::now();
        self.report(&election);
        loop {
            let deadline = self.epoch + election.next_deadline();
            let actions = tokio::select! {
                _ = tokio::time::sleep_until(deadline.min(next_track).into()) => {
                    let mut actions = Vec::new();
                    if Instant::now() >= next_track {
                        next_track = Instant::now() + interval;
                        actions.extend(election.set_priority(self.now(), self.tracked_priority()));
                    }
                    actions.extend(election.on_timer(self.now()));
                    actions
                }
                got = self.socket.recv_from(&mut buf) => {
                    let Ok((n, from)) = got else { continue };
                    if !crate::firewall::admit_udp(from.ip(), self.socket.local_addr()?.port()) {
                        continue;
                    }
                    match decode(&buf[..n], from.ip(), &self.name, &self.secret, unix_now().as_micros() as u64, &mut guard) {
                        Ok(h) => election.on_advert(self.now(), Advert { from: h.from, priority: h.priority }),
                        Err(why) => {
                            eprintln!("floating IP {}: ignored a heartbeat from {from}: {why}", self.name);
                            Vec::new()
                        }
                    }
                }
                _ = shutdown.cancelled() => {
                    let actions = election.stop(self.now());
                    self.apply(&election, actions).await;
                    return Ok(());
                }
            };
            if !actions.is_empty() {
                self.apply(&election, actions).await;
            }
        }
    }

    /// The priority in effect: lowered by the track weight while every backend of the
    /// load balancer is down (keepalived's weighted tracking).
    fn tracked_priority(&self) -> u8 {
        let all_down = crate::pool::current().is_some_and(|pool| {
            let backends = pool.snapshot();
            !backends.is_empty() && backends.iter().all(|b| !b.up)
        });
        if all_down {
            self.base.saturating_sub(self.track_weight).max(1)
        } else {
            self.base
        }
    }

    async fn apply(&mut self, election: &Election, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(priority) => {
                    let h = Heartbeat {
                        group: self.name.clone(),
                        from: self.me,
                        priority,
                        interval_ms: 0,
                        sent_us: unix_now().as_micros() as u64,
                    };
                    let datagram = encode(&h, &self.secret);
                    for peer in &self.peers {
                        // A peer that is down refuses (ICMP); the next beat tries again.
                        let _ = self.socket.send_to(&datagram, peer).await;
                    }
                }
                Action::Take => {
                    let (address, doors, status) =
                        (self.address, self.doors.clone(), self.status.clone());
                    let release = CancellationToken::new();
                    let task = tokio::spawn(hold(address, doors, status, release.clone()));
                    self.holder = Some((task, release));
                }
                Action::Release => {
                    if let Some((task, release)) = self.holder.take() {
                        release.cancel();
                        let _ = task.await;
                    }
                    self.status.update(|s| {
                        if let Some(f) = &mut s.floating {
                            f.holding = false;
                        }
                    });
                }
                Action::Became(state) => {
                    eprintln!(
                        "floating IP {}: {} (priority {}, master {})",
                        self.name,
                        state.name(),
                        election.priority(),
                        election
                            .master
                            .map_or("unknown".to_string(), |m| m.to_string())
                    );
                    self.notify(state.name(), election.priority());
                }
            }
        }
        self.report(election);
    }

    fn report(&self, e: &Election) {
        let since_takeover = e.last_takeover.map(|t| self.now().saturating_sub(t));
        let floating = FloatingStatus {
            name: self.name.clone(),
            address: self.address,
            state: e.state().name().to_string(),
            priority: e.priority(),
            base_priority: self.base,
            holding: false,
            transitions: e.transitions,
            last_takeover: since_takeover.map(|d| (unix_now() - d).as_secs_f64()),
            master: e.master,
        };
        self.status.update(|s| {
            let holding = s.floating.as_ref().is_some_and(|f| f.holding);
            s.floating = Some(FloatingStatus {
                holding,
                ..floating
            });
        });
    }

    /// keepalived's notify: the command with `INSTANCE NAME STATE PRIORITY` appended.
    fn notify(&self, state: &str, priority: u8) {
        let Some([program, args @ ..]) = self.notify.as_deref() else {
            return;
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .args(["INSTANCE", &self.name, state, &priority.to_string()]);
        webstack_net::process::spawn_hook(
            cmd,
            "floating IP",
            format!("notify {program:?} for {state}"),
        );
    }
}

/// Binds every door's port on the floating address (retrying while another holder still
/// has them), then hands each accepted connection to its door until `release`; then
/// passes on what the kernel had already accepted (closing a listener resets those) and
/// closes.
async fn hold(
    address: IpAddr,
    doors: Arc<Vec<Door>>,
    status: Arc<StatusFile>,
    release: CancellationToken,
) {
    let started = Instant::now();
    let mut logged = false;
    let listeners = loop {
        if release.is_cancelled() {
            return;
        }
        let bound: Result<Vec<_>, _> = doors
            .iter()
            .map(|d| crate::firewall::bind(SocketAddr::new(address, d.port)))
            .collect();
        match bound {
            Ok(l) => break l,
            Err(e) => {
                if !logged {
                    eprintln!("floating IP: {address} is still held elsewhere ({e}); trying every {BIND_RETRY:?}");
                    logged = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(BIND_RETRY) => {}
                    _ = release.cancelled() => return,
                }
            }
        }
    };
    eprintln!(
        "floating IP: holding {address} (ports {}) after {:?}",
        doors
            .iter()
            .map(|d| d.port.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed()
    );
    status.update(|s| {
        if let Some(f) = &mut s.floating {
            f.holding = true;
        }
    });
    let mut accepting = JoinSet::new();
    for (listener, door) in listeners.into_iter().zip(doors.iter()) {
        let (tx, release) = (door.tx.clone(), release.clone());
        accepting.spawn(async move {
            loop {
                let conn = tokio::select! {
                    got = listener.accept() => got,
                    _ = release.cancelled() => break,
                };
                let Ok(conn) = conn else { break };
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
            // The backlog: connections the kernel completed that nobody accepted yet.
            while let Some(Ok(conn)) = listener.accept().now_or_never() {
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
        });
    }
    while accepting.join_next().await.is_some() {}
}
