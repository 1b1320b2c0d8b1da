//! The authoritative DNS server: the design's zone served over UDP and TCP by hickory.

use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::LowerName;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
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
    let mut zone = InMemoryZoneHandler::<hickory_net::runtime::TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    for record in records {
        zone.upsert_mut(record, serial);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);

    let mut server = Server::new(crate::counts::Counted {
        inner: EdnsAnswers { inner: catalog },
        counts,
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_TIMEOUT, 64 * 1024);
    shutdown.cancelled().await;
    server
        .shutdown_gracefully()
        .await
        .map_err(|e| DnsError::Serve(e.to_string()))
}
