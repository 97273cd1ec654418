//! Deterministic simulation of whole mason clusters under faults.
//!
//! The real sequencer, proxy replica, client and (with a shared log, CorfuMason) log
//! server state machines run in one thread, driven by one u64 seed: virtual time, a
//! network that delays, drops, duplicates, reorders and partitions, crashes with restart
//! from what a machine had written to disk (and loss of what it had not synced), and timer
//! jitter. The same seed replays the same run, event
//! for event; a failing seed prints the command that replays it.

mod check;
mod corfu;
mod failover;
mod keeper;
mod logcheck;
pub mod net;
pub mod scenario;
pub mod trace;
pub mod world;
mod zkcheck;
mod zkmason;

pub use scenario::{find, run_seed, Options, Outcome, Scenario, SimMutant, SCENARIOS};
