//! The floating IP's election, as VRRPv3 (RFC 5798) and keepalived run it, without I/O:
//! `election` is the state machine of one load balancer (backup, master; adverts every
//! interval; a backup takes over after 3 × interval + skew of silence, or after the skew
//! alone when the master says it is leaving; preempt, nopreempt, a preempt delay; a
//! tracked priority), fed the time; `packet` is the heartbeat on the wire, signed with the
//! stack's secret and refused when replayed.
//!
//! Architecture invariant: pure. The node owns the sockets, the clock and the address.

mod election;
mod packet;

pub use election::{Action, Advert, Election, Settings, State};
pub use packet::{decode, encode, Heartbeat, Reject, ReplayGuard};
