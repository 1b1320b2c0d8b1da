//! A small DNS client for health probes and tests: one query, one answer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::DnsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What a query got back, reduced to what probes and tests look at.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: ResponseCode,
    pub authoritative: bool,
    pub addresses: Vec<IpAddr>,
    /// Record types in the authority section (an SOA comes with NXDOMAIN).
    pub authority_types: Vec<RecordType>,
    pub message: Message,
}

/// Sends one query to `server` and waits up to `timeout` for the answer.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    transport: Transport,
    timeout: Duration,
) -> Result<Answer, DnsError> {
    let qname = Name::from_ascii(name).map_err(|e| DnsError::Name {
        name: name.into(),
        reason: e.to_string(),
    })?;
    let mut msg = Message::query();
    msg.metadata.id = rand_id();
    msg.add_query(Query::query(qname, rtype));
    let bytes = msg.to_vec().map_err(|e| DnsError::Client(e.to_string()))?;
    let io = async {
        match transport {
            Transport::Udp => {
                let bind: SocketAddr = if server.is_ipv4() {
                    "127.0.0.1:0".parse().unwrap()
                } else {
                    "[::1]:0".parse().unwrap()
                };
                let socket = UdpSocket::bind(bind).await?;
                // Connected, so a closed port is reported at once (ICMP port unreachable)
                // instead of waiting out the timeout, and only the server's answer is read.
                socket.connect(server).await?;
                socket.send(&bytes).await?;
                let mut buf = vec![0u8; 4096];
                let n = socket.recv(&mut buf).await?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            }
            Transport::Tcp => {
                let mut stream = TcpStream::connect(server).await?;
                stream
                    .write_all(&(bytes.len() as u16).to_be_bytes())
                    .await?;
                stream.write_all(&bytes).await?;
                let len = stream.read_u16().await? as usize;
                let mut buf = vec![0u8; len];
                stream.read_exact(&mut buf).await?;
                Ok(buf)
            }
        }
    };
    let buf = tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| DnsError::Client(format!("no answer from {server} within {timeout:?}")))?
        .map_err(|e| DnsError::Client(format!("{server}: {e}")))?;
    let message = Message::from_vec(&buf).map_err(|e| DnsError::Client(e.to_string()))?;
    if message.metadata.id != msg.metadata.id {
        return Err(DnsError::Client("answer with a different id".into()));
    }
    let addresses = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    Ok(Answer {
        code: message.metadata.response_code,
        authoritative: message.metadata.authoritative,
        addresses,
        authority_types: message
            .authorities
            .iter()
            .map(|r| r.record_type())
            .collect(),
        message,
    })
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(7);
    (nanos ^ std::process::id()) as u16
}
