//! The mason client: [`Client::sequence`] gets a multi-sequence number for an op, through
//! the client's proxy group (retrying at another replica on timeout or "not leader") or,
//! in the direct baseline, straight from the sequencer. [`load`] is the closed-loop load
//! generator used by `mason local` and benchmarks.

mod driver;
pub mod load;

pub use driver::{Client, ClientConfig, ClientError, MultiSeq, Target};
