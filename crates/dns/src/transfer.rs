//! Secondary name servers (RFC 2182 asks for two per zone): the primary lets only its
//! secondaries transfer the zone (AXFR, RFC 5936; BIND's `allow-transfer`) and tells them
//! of a new serial with NOTIFY (RFC 1996) when it starts; a secondary transfers the zone
//! at start, on NOTIFY and every SOA refresh interval when the serial moved, keeps the
//! last copy on disk (it answers from it while the primary is down), and stops answering
//! (SERVFAIL) once the copy is older than the SOA's expire.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_net::runtime::Time;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, MessageResponseBuilder, ZoneType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::DnsError;

/// Answers an error for `request` (no records).
async fn refuse<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    mut response_handle: R,
) -> ResponseInfo {
    let response =
        MessageResponseBuilder::new(&request.queries, None).error_msg(&request.metadata, code);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => {
            let mut metadata =
                hickory_proto::op::Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            })
        }
    }
}

fn asks_for_transfer(request: &Request) -> bool {
    request
        .queries
        .queries()
        .iter()
        .any(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR))
}

/// The primary's guard: zone transfers only for its secondaries, REFUSED for anyone else.
pub struct TransferPolicy<H> {
    pub inner: H,
    pub secondaries: Vec<IpAddr>,
}

#[async_trait::async_trait]
impl<H: RequestHandler> RequestHandler for TransferPolicy<H> {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if asks_for_transfer(request) && !self.secondaries.contains(&request.src().ip()) {
            return refuse(request, ResponseCode::Refused, response_handle).await;
        }
        self.inner
            .handle_request::<_, T>(request, response_handle)
            .await
    }
}

/// The AXFR policy of the primary's zone: transfers allowed (to the secondaries, which
/// `TransferPolicy` checks) when it has any.
pub fn primary_policy(secondaries: &[IpAddr]) -> AxfrPolicy {
    if secondaries.is_empty() {
        AxfrPolicy::Deny
    } else {
        AxfrPolicy::AllowAll
    }
}

/// Tells `secondary` that `origin` has serial `serial` now (RFC 1996 §3.6: the query
/// section holds the zone's SOA; the answer carries the new SOA as a hint), from the
/// primary's own address `local` (a secondary acts only on its primary's NOTIFY).
/// Retried a few times, as the RFC asks; `Ok` once the secondary answered NOERROR.
pub async fn notify(
    local: IpAddr,
    secondary: SocketAddr,
    origin: &Name,
    soa: &Record,
) -> Result<(), DnsError> {
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Notify;
    msg.metadata.authoritative = true;
    msg.metadata.id = soa_id(soa);
    msg.add_query(Query::query(origin.clone(), RecordType::SOA));
    msg.add_answer(soa.clone());
    let bytes = msg.to_vec().map_err(|e| DnsError::Client(e.to_string()))?;
    let mut last = String::new();
    for _ in 0..5 {
        let once = async {
            let socket = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
            socket.connect(secondary).await?;
            socket.send(&bytes).await?;
            let mut buf = vec![0u8; 512];
            let n = socket.recv(&mut buf).await?;
            Ok::<_, std::io::Error>(buf[..n].to_vec())
        };
        match tokio::time::timeout(Duration::from_secs(1), once).await {
            Ok(Ok(answer)) => match Message::from_vec(&answer) {
                Ok(m) if m.metadata.response_code == ResponseCode::NoError => return Ok(()),
                Ok(m) => last = format!("it answered {}", m.metadata.response_code),
                Err(_) => last = "an unreadable answer".into(),
            },
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "no answer within 1 s".into(),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(DnsError::Client(format!("NOTIFY to {secondary}: {last}")))
}

fn soa_id(soa: &Record) -> u16 {
    match &soa.data {
        RData::SOA(s) => s.serial as u16,
        _ => 0,
    }
}

/// The whole zone `origin` from `primary` by AXFR over TCP, from the secondary's own
/// address `local` (the primary lets only its secondaries transfer): its records, SOA
/// first.
pub async fn axfr(
    local: IpAddr,
    primary: SocketAddr,
    origin: &Name,
) -> Result<Vec<Record>, DnsError> {
    let mut msg = Message::query();
    msg.metadata.id = 0x5a5a;
    msg.add_query(Query::query(origin.clone(), RecordType::AXFR));
    let bytes = msg.to_vec().map_err(|e| DnsError::Client(e.to_string()))?;
    let io = async {
        let socket = if primary.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(|e| e.to_string())?;
        let mut stream = socket.connect(primary).await.map_err(|e| e.to_string())?;
        stream
            .write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
        // RFC 5936 §2.2: the records come in one or more messages, the zone's SOA first
        // and again last.
        let mut records: Vec<Record> = Vec::new();
        loop {
            let len = stream.read_u16().await.map_err(|e| e.to_string())? as usize;
            let mut buf = vec![0u8; len];
            stream
                .read_exact(&mut buf)
                .await
                .map_err(|e| e.to_string())?;
            let answer = Message::from_vec(&buf).map_err(|e| e.to_string())?;
            if answer.metadata.response_code != ResponseCode::NoError {
                return Err(format!(
                    "the primary answered {}",
                    answer.metadata.response_code
                ));
            }
            for r in answer.answers {
                let soa = r.record_type() == RecordType::SOA;
                if soa && !records.is_empty() {
                    return Ok(records);
                }
                if records.is_empty() && !soa {
                    return Err("the transfer does not start with the SOA".to_string());
                }
                records.push(r);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .map_err(|_| {
            DnsError::Client(format!(
                "AXFR from {primary}: no complete answer within 10 s"
            ))
        })?
        .map_err(|e| DnsError::Client(format!("AXFR from {primary}: {e}")))
}

/// The SOA's serial, refresh, retry and expire.
fn soa_of(records: &[Record]) -> Option<(u32, Duration, Duration, Duration)> {
    records.iter().find_map(|r| match &r.data {
        RData::SOA(s) => Some((
            s.serial,
            Duration::from_secs(s.refresh.max(1) as u64),
            Duration::from_secs(s.retry.max(1) as u64),
            Duration::from_secs(s.expire.max(1) as u64),
        )),
        _ => None,
    })
}

/// A catalog holding `records` as the zone `origin`.
fn catalog(origin: &Name, records: &[Record], zone_type: ZoneType) -> Catalog {
    let serial = soa_of(records).map_or(0, |s| s.0);
    let mut zone = InMemoryZoneHandler::<hickory_net::runtime::TokioRuntimeProvider>::empty(
        origin.clone(),
        zone_type,
        AxfrPolicy::Deny,
    );
    for r in records {
        zone.upsert_mut(r.clone(), serial);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(origin), vec![Arc::new(zone)]);
    catalog
}

/// A secondary's copy of the zone and what it knows of it.
struct Copy {
    catalog: Arc<Catalog>,
    serial: u32,
    refreshed: Instant,
    expire: Duration,
}

/// A secondary name server: answers from its copy of the zone, takes NOTIFY from the
/// primary, and keeps the copy current.
pub struct Secondary {
    origin: Name,
    /// This server's own address, which transfers leave from.
    local: IpAddr,
    primary: SocketAddr,
    store: PathBuf,
    copy: RwLock<Option<Copy>>,
    notified: tokio::sync::Notify,
}

impl Secondary {
    /// A secondary of `origin` transferring from `primary`, keeping its copy in `store`
    /// (loaded now if it is there).
    pub fn new(origin: Name, local: IpAddr, primary: SocketAddr, store: PathBuf) -> Arc<Secondary> {
        let me = Secondary {
            origin,
            local,
            primary,
            store,
            copy: RwLock::new(None),
            notified: tokio::sync::Notify::new(),
        };
        if let Some(records) = std::fs::read(&me.store)
            .ok()
            .and_then(|b| Message::from_vec(&b).ok())
            .map(|m| m.answers)
        {
            if let Some((serial, ..)) = soa_of(&records) {
                eprintln!(
                    "dns: answering from the copy of {} kept in {} (serial {serial}) until the primary is asked",
                    me.origin,
                    me.store.display()
                );
                me.install(&records);
            }
        }
        Arc::new(me)
    }

    fn serial(&self) -> Option<u32> {
        self.copy
            .read()
            .expect("zone lock")
            .as_ref()
            .map(|c| c.serial)
    }

    fn install(&self, records: &[Record]) {
        let Some((serial, _, _, expire)) = soa_of(records) else {
            return;
        };
        *self.copy.write().expect("zone lock") = Some(Copy {
            catalog: Arc::new(catalog(&self.origin, records, ZoneType::Secondary)),
            serial,
            refreshed: Instant::now(),
            expire,
        });
    }

    fn touch(&self) {
        if let Some(c) = self.copy.write().expect("zone lock").as_mut() {
            c.refreshed = Instant::now();
        }
    }

    /// Keeps the copy current until dropped: at start, on NOTIFY, and every refresh
    /// interval (every retry interval after a failure).
    pub async fn keep_current(self: Arc<Self>) {
        loop {
            let wait = match self.refresh().await {
                Ok(refresh) => refresh,
                Err((retry, e)) => {
                    // With no copy yet this server cannot answer at all: ask again soon.
                    let retry = if self.serial().is_none() {
                        retry.min(Duration::from_secs(1))
                    } else {
                        retry
                    };
                    eprintln!("dns: cannot refresh {} from the primary {}: {e}; trying again in {retry:?}", self.origin, self.primary);
                    retry
                }
            };
            tokio::select! {
                _ = self.notified.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Asks the primary for its serial and transfers the zone if it moved.
    async fn refresh(&self) -> Result<Duration, (Duration, DnsError)> {
        // Before the primary has said its SOA's retry interval.
        let default_retry = Duration::from_secs(5);
        let soa = crate::client::query(
            self.primary,
            &self.origin.to_ascii(),
            RecordType::SOA,
            crate::client::Transport::Udp,
            Duration::from_secs(2),
        )
        .await
        .map_err(|e| (default_retry, e))?;
        let theirs = soa_of(&soa.message.answers).ok_or((
            default_retry,
            DnsError::Client("the primary's answer has no SOA".into()),
        ))?;
        if self.serial() == Some(theirs.0) {
            self.touch();
            return Ok(theirs.1);
        }
        let records = axfr(self.local, self.primary, &self.origin)
            .await
            .map_err(|e| (theirs.2, e))?;
        self.install(&records);
        let mut keep = Message::query();
        for r in &records {
            keep.add_answer(r.clone());
        }
        if let Ok(bytes) = keep.to_vec() {
            let tmp = self.store.with_extension("tmp");
            if std::fs::write(&tmp, bytes).is_ok() {
                let _ = std::fs::rename(&tmp, &self.store);
            }
        }
        eprintln!(
            "dns: transferred {} from the primary {} (AXFR): {} records, serial {}",
            self.origin,
            self.primary,
            records.len(),
            theirs.0
        );
        Ok(theirs.1)
    }
}

/// The request handler of a secondary (an `Arc<Secondary>`).
pub struct SecondaryHandler(pub Arc<Secondary>);

#[async_trait::async_trait]
impl RequestHandler for SecondaryHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let me = &self.0;
        if request.metadata.message_type == MessageType::Query
            && request.metadata.op_code == OpCode::Notify
        {
            // RFC 1996 §3.10: only the primary's NOTIFY is acted on.
            if request.src().ip() != me.primary.ip() {
                return refuse(request, ResponseCode::Refused, response_handle).await;
            }
            me.notified.notify_one();
            return refuse(request, ResponseCode::NoError, response_handle).await;
        }
        if asks_for_transfer(request) {
            return refuse(request, ResponseCode::Refused, response_handle).await;
        }
        let catalog = {
            let copy = me.copy.read().expect("zone lock");
            match copy.as_ref() {
                Some(c) if c.refreshed.elapsed() < c.expire => Some(c.catalog.clone()),
                _ => None,
            }
        };
        match catalog {
            Some(c) => c.handle_request::<_, T>(request, response_handle).await,
            // No copy yet, or one past its expire: this server cannot answer for the zone.
            None => refuse(request, ResponseCode::ServFail, response_handle).await,
        }
    }
}
