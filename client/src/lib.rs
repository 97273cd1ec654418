//! The mason client: [`Client::sequence`] gets a multi-sequence number for an op, through
//! the client's proxy group (retrying at another replica on timeout or "not leader") or,
//! in the direct baseline, straight from the sequencer. The protocol itself is
//! [`ClientCore`], a deterministic state machine with no I/O that the async driver behind
//! [`Client`] and the simulator both drive. [`load`] is the closed-loop load generator used
//! by `mason local` and benchmarks.

pub mod core;
mod driver;
pub mod load;
pub mod log;
pub mod watch;

pub use self::core::{ClientAction, ClientCore, ClientError, CoreConfig, CoreTarget, MultiSeq};
pub use driver::{Client, ClientConfig, Target};
