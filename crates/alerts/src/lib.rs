//! Alerting as Prometheus does it, without I/O: rule expressions in a subset of PromQL
//! (`expr`), evaluated against whatever holds the samples (`Source`), and the life of
//! each alert (`rules`): pending while its condition holds for less than `for`, firing
//! after, resolved when the condition clears. The collector feeds it samples and the
//! time; the design's validation parses the expressions so a typo is caught at `check`.
//!
//! Architecture invariant: pure. Time is passed in, samples are asked of a `Source`.

mod expr;
mod rules;

pub use expr::{
    parse, parse_duration, Expr, Labels, Matcher, ParseError, Points, Selector, Source, Vector,
};
pub use rules::{default_rules, Alert, AlertState, Engine, Rule, RuleSpec, Transition};
