//! Every log a stack writes is rotated by size: a log that would pass its limit is renamed
//! aside (`access.log` → `access.log.1` → … → `access.log.{keep-1}`, the oldest deleted)
//! and a new one is started, between two whole lines, so rotation never loses or splits a
//! line.
//!
//! Three kinds of writer use it: components that write lines themselves (the web server's
//! access log) hold a [`RotatingFile`]; a node's own output and its children's (app
//! commands, start-up messages) go through [`capture_output`], a pipe whose reader writes
//! whole lines into a rotating `node.log`; a log another program keeps open (mariadbd's
//! error log) is shifted with [`shift`] and the program is told to reopen it (`FLUSH
//! ERROR LOGS`), as logrotate does.
//!
//! Why not the `file-rotate` crate: its byte limit cuts a line in two at the limit and it
//! brings chrono for date suffixes; what is needed here is whole-line rotation with
//! numbered files, which is the sixty lines below.

mod capture;
mod policy;
mod rotating;

pub use capture::{capture_output, finish_capture, tap_output};
pub use policy::{needs_rotation, rotated_path, RotationPolicy};
pub use rotating::{shift, RotatingFile};
