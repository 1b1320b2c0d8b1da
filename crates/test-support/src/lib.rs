//! What webstack's tests need again and again: a raw HTTP client, a running stack of the
//! real `webstack` binary that is stopped (by pid) when the test ends, pass or fail, and
//! writers whose acknowledgements are recorded.

pub mod http;
pub mod stack;
pub mod writers;

pub use stack::{
    alive, eventually, listening_sockets_on, recorded_pids, unique_subnet, Load, Stack,
};
pub use writers::{messages_held, Writers};
