//! The authoritative DNS server: the design's zone served over UDP and TCP by hickory, by
//! the primary (from the design) and by its secondaries (by zone transfer, `transfer`).

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::LowerName;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{Catalog, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use webstack_topology::Design;

use crate::edns::EdnsAnswers;
use crate::zone::zone_records;
use crate::DnsError;

/// How long a TCP client may take to send its query before the connection is closed.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the design's zone on the given sockets until `shutdown` is cancelled.
///
/// Names in the zone that have no records get NXDOMAIN with the SOA; names outside the
/// zone get REFUSED, as an authoritative-only server (BIND with recursion off) answers.
pub async fn run(
    design: &Design,
    udp: UdpSocket,
    tcp: TcpListener,
    counts: Arc<crate::AnswerCounts>,
    shutdown: CancellationToken,
) -> Result<(), DnsError> {
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(1);
    let (origin, records) = zone_records(design, serial)?;
    let secondaries = design.dns.secondaries.clone();
    let soa = records
        .iter()
        .find(|r| r.record_type() == hickory_proto::rr::RecordType::SOA)
        .cloned()
        .expect("the zone has an SOA");
    let mut zone = InMemoryZoneHandler::<hickory_net::runtime::TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        crate::transfer::primary_policy(&secondaries),
    );
    for record in records {
        zone.upsert_mut(record, serial);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);

    let mut server = Server::new(crate::counts::Counted {
        inner: EdnsAnswers {
            inner: crate::transfer::TransferPolicy {
                inner: catalog,
                secondaries: secondaries.clone(),
            },
        },
        counts,
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT, 64 * 1024);
    // A new serial (every start has one): the secondaries transfer it now rather than at
    // their next refresh.
    let primary_ip = design.dns.address;
    for ip in secondaries {
        let (origin, soa) = (origin.clone(), soa.clone());
        let to = std::net::SocketAddr::new(ip, design.dns.port);
        tokio::spawn(async move {
            match crate::transfer::notify(primary_ip, to, &origin, &soa).await {
                Ok(()) => eprintln!("dns: told the secondary {to} of serial {serial} (NOTIFY)"),
                Err(e) => eprintln!("dns: {e}; it finds the new serial at its next refresh"),
            }
        });
    }
    shutdown.cancelled().await;
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsError::Serve(e.to_string()))
}

/// Serves the zone as a secondary of `primary`, keeping the transferred copy in `store`,
/// until `shutdown` is cancelled.
pub async fn run_secondary(
    design: &Design,
    primary: std::net::SocketAddr,
    store: std::path::PathBuf,
    udp: UdpSocket,
    tcp: TcpListener,
    counts: Arc<crate::AnswerCounts>,
    shutdown: CancellationToken,
) -> Result<(), DnsError> {
    let origin = crate::zone::zone_records(design, 0)?.0;
    let local = udp
        .local_addr()
        .map_err(|e| DnsError::Serve(e.to_string()))?
        .ip();
    let secondary = crate::transfer::Secondary::new(origin, local, primary, store);
    let refresh = tokio::spawn(secondary.clone().keep_current());
    let mut server = Server::new(crate::counts::Counted {
        inner: EdnsAnswers {
            inner: crate::transfer::SecondaryHandler(secondary),
        },
        counts,
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT, 64 * 1024);
    shutdown.cancelled().await;
    refresh.abort();
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsError::Serve(e.to_string()))
}
