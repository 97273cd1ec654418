//! The mason sequencer: one counter per sequence space and an epoch. A request asks for
//! ranges for a whole batch of one proxy group; the same (group, batch id) asked again
//! gets the same ranges back, marked as a repeat (at-most-once).
//!
//! [`Sequencer`] is the state machine (no I/O, no clock); [`SeqNode`] wraps it with the
//! backup's takeover (DESIGN.md section 5); `server` drives a node over a
//! [`Transport`](mason_common::transport::Transport); `bench` measures it.

pub mod bench;
mod metrics;
pub mod node;
pub mod server;
mod state;

pub use node::{SeqMutant, SeqNode, SeqNodeConfig, SeqOut};
pub use state::{Sequencer, SequencerConfig};
