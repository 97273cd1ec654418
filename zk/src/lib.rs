//! `mason-zk`: ZooKeeper's data tree as a deterministic state machine.
//!
//! The tree ([`DataTree`]) holds znodes, sessions and ephemeral sets, and
//! applies one [`Request`] at a time with ZooKeeper 3.8's semantics: the
//! same checks in the same order, the same result codes ([`Code`]), the same
//! [`Stat`] values (reported cversion `2 * child creates - children`,
//! sequential suffixes from the stored child-create counter, pzxid moves on
//! child create and delete), atomic multi with ZooKeeper's per-op results,
//! and the watch triggers each change fires. It does no I/O and reads no
//! clock: the zxid and the time of each write come in a [`Ctx`].
//!
//! Watches live in a separate [`WatchTable`] (one per server), as ZooKeeper
//! keeps its `WatchManager` apart from its `DataTree`: apply returns
//! [`Trigger`]s and the table turns them into per-session events.
//!
//! For ZK-Mason, [`shard`] says which shard owns a path and which shards an
//! op touches, and [`order::InOrder`] hands a shard server its space's
//! positions strictly in order, whatever order they come in. [`sharded`]
//! runs an op on one shard's part of the tree, with the views of the other
//! shards it touches, so that every shard decides as the whole tree would.
//!
//! [`history::check`] checks a run's acknowledged ops per znode for
//! linearizability, from the clients' records.
//!
//! For replica agreement the tree has [`DataTree::digest`],
//! [`DataTree::first_difference`], and a checked binary
//! [`DataTree::snapshot`] / [`DataTree::restore`].
//!
//! Not modelled (yet): authentication (requests act as an unauthenticated
//! client, so only `world:anyone` ACL entries grant access), container and
//! TTL nodes (`Unimplemented`), quota bookkeeping under `/zookeeper/quota`,
//! reconfig, persistent and recursive watches, and session liveness checks
//! on every request (the caller's session layer does those; the tree checks
//! only that an ephemeral's owner is a known session).

mod acl;
mod code;
mod digest;
pub mod feed;
pub mod feed_polls;
pub mod history;
pub mod jute;
pub mod local;
mod multi;
mod op;
pub mod order;
pub mod path;
mod read;
mod session;
pub mod shard;
pub mod sharded;
mod snapshot;
mod tree;
mod types;
mod watch;
mod write;

#[cfg(test)]
mod tests;

pub use acl::{check_acl, fixup_acl};
pub use code::Code;
pub use op::{Applied, Ctx, OpResult, Request, Response, Trigger, ANY_VERSION};
pub use snapshot::SnapshotError;
pub use tree::{DataTree, CONFIG_PATH, QUOTA_PATH, ZOOKEEPER_PATH};
pub use types::{
    opcode, perms, Acl, CreateMode, EventType, Stat, StatPersisted, KEEPER_STATE_SYNC_CONNECTED,
};
pub use watch::{WatchKind, WatchTable, WatchedEvent};
