//! The firewall of each server: a least-privilege policy derived from the design (who
//! talks to whom on the whiteboard), the design's own allow and deny rules on top, the
//! first-match decision for a connection, per-rule counters, and the same policy as an
//! nftables ruleset for a real host.
//!
//! Architecture invariant: pure. No sockets, no files: the node asks `decide` at accept
//! time and counts; the CLI prints `show` and `nftables`.

mod derive;
mod nftables;
mod policy;

pub use derive::{derive, operator_address};
pub use nftables::nftables;
pub use policy::{Action, Counters, Decision, Policy, Rule, Sources};
pub use webstack_topology::Protocol;
