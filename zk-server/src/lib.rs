//! `mason-zk-server`: a ZK-Mason shard server (`mason zk-server`). The role is
//! [`node::ZkNode`], a state machine with no I/O (the simulator can drive it); the
//! runtime is [`server::serve`]; what is kept on disk is in [`store`]; [`op`] decides and
//! runs one delivered ZooKeeper request.

mod metrics;
pub mod node;
pub mod op;
pub mod server;
pub mod store;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_intake;
#[cfg(test)]
mod tests_reads;
