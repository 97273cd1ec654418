//! `mason-zk-gateway`: ZooKeeper's client wire protocol in front of RSMKeeper and
//! ZK-Mason (`mason zk-gateway`), so that an unmodified ZooKeeper client can use them.
//! Each connection is a [`conn::GwConn`], a state machine with no I/O; the runtime
//! ([`server::serve`]) reads and writes the sockets and runs each ZooKeeper session's
//! requests on its own backend session ([`mason_client::zk::ZkClient`]) through the
//! proxy groups. [`fourlw`] answers the four-letter words. [`watches::WatchHub`] keeps the
//! clients' watches and fires them from the servers' watch feeds ([`feeds`]).

pub mod conn;
pub mod feeds;
pub mod fourlw;
pub mod server;
pub mod watches;
