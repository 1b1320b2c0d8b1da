//! The zone of a design as DNS records: SOA, NS and the A records. No I/O.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{Name, RData, Record};
use webstack_topology::Design;

use crate::DnsError;

/// Time to live of the A records. Short, so that clients notice a moved address soon.
pub const RECORD_TTL: u32 = 30;

/// The name of the zone's own name server, `ns1.<domain>`.
pub fn name_server_name(design: &Design) -> String {
    format!("ns1.{}", design.domain)
}

/// Every record of the design's zone.
pub fn zone_records(design: &Design, serial: u32) -> Result<(Name, Vec<Record>), DnsError> {
    let origin = fqdn(&design.domain)?;
    let ns_name = fqdn(&name_server_name(design))?;
    let hostmaster = fqdn(&format!("hostmaster.{}", design.domain))?;
    let mut records = vec![Record::from_rdata(
        origin.clone(),
        3600,
        RData::SOA(SOA::new(
            ns_name.clone(),
            hostmaster,
            serial,
            3600,
            600,
            86400,
            RECORD_TTL,
        )),
    )];
    // One NS record per name server, each with its address (glue): ns1 is the primary.
    for (i, (_, ip)) in design.dns.name_servers().into_iter().enumerate() {
        let name = if i == 0 {
            ns_name.clone()
        } else {
            fqdn(&format!("ns{}.{}", i + 1, design.domain))?
        };
        records.push(Record::from_rdata(
            origin.clone(),
            3600,
            RData::NS(NS(name.clone())),
        ));
        records.push(address_record(name, 3600, ip));
    }
    for record in &design.dns.records {
        let name = fqdn(&design.fqdn(&record.name))?;
        for ip in design.record_addresses(record) {
            records.push(address_record(name.clone(), RECORD_TTL, ip));
        }
    }
    Ok((origin, records))
}

fn address_record(name: Name, ttl: u32, ip: IpAddr) -> Record {
    let rdata = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(name, ttl, rdata)
}

fn fqdn(name: &str) -> Result<Name, DnsError> {
    let mut n = Name::from_ascii(name).map_err(|e| DnsError::Name {
        name: name.to_string(),
        reason: e.to_string(),
    })?;
    n.set_fqdn(true);
    Ok(n)
}
