//! The DNS component: an authoritative name server for the design's domain.
//!
//! `zone` turns a design into records (no I/O); `server` serves them with hickory-server;
//! `client` is the one-query client that health probes and tests use.

pub mod client;
mod counts;
pub mod edns;
mod server;
pub mod transfer;
mod zone;

#[cfg(test)]
mod tests;

pub use client::{query, Answer, Transport};
pub use counts::AnswerCounts;
pub use hickory_proto::op::ResponseCode;
pub use hickory_proto::rr::RecordType;
pub use server::{run, run_secondary};
pub use zone::{name_server_name, zone_records, RECORD_TTL};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("{name:?} is not a valid DNS name: {reason}")]
    Name { name: String, reason: String },
    #[error("DNS server failed: {0}")]
    Serve(String),
    #[error("DNS query failed: {0}")]
    Client(String),
}
