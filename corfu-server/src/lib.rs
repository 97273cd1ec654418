//! A Corfu log server (DESIGN.md section 8): write-once positions of one shard of the
//! shared log, stored durably in checksummed segment files, and chain replication.
//!
//! - [`storage`]: the [`storage::Storage`] seam, and an in-memory store for the simulator;
//! - [`disk`]: the segment-file store the server runs on;
//! - [`node`]: the server's role as a state machine (write-once, the chain, reads);
//! - [`server`]: the runtime that drives a node on real sockets and a real disk.

pub mod disk;
mod metrics;
pub mod node;
pub mod server;
pub mod storage;
