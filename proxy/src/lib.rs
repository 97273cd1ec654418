//! A mason proxy: replicas of proxy groups. Each [`Replica`] is a state machine (no I/O)
//! around a raft-rs `RawNode`; [`server`] drives the replicas one process hosts over real
//! sockets and files.

pub mod config;
pub mod entry;
pub mod recorded;
pub mod replica;
pub mod server;
pub mod store;
pub mod wal;

pub use replica::{Action, ConnId, Incoming, Mutant, Replica, ReplicaConfig};
