//! ZooKeeper's data types: `Stat`, `Acl`, create modes, watch event types,
//! permission bits and opcode numbers, all with ZooKeeper's own numbers.

use crate::code::Code;

/// A znode's status as a client sees it: exactly the 11 fields of
/// ZooKeeper's `Stat` record (68 bytes on the wire), in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Stat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// Reported child version: `2 * stored_child_creates - num_children`.
    pub cversion: i32,
    pub aversion: i32,
    /// The owning session of an ephemeral node, 0 otherwise.
    pub ephemeral_owner: i64,
    pub data_length: i32,
    pub num_children: i32,
    pub pzxid: i64,
}

/// The persisted part of a znode's status (ZooKeeper's `StatPersisted`).
/// `cversion` here is the stored counter of child creates, not the reported
/// value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

impl StatPersisted {
    /// A new node's status (ZooKeeper's `DataTree.createStat`).
    pub fn created(zxid: i64, time_ms: i64, ephemeral_owner: i64) -> StatPersisted {
        StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time_ms,
            mtime: time_ms,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner,
            pzxid: zxid,
        }
    }

    /// What a client sees (ZooKeeper's `DataNode.copyStat`), with Java's
    /// 32-bit wrapping arithmetic.
    pub fn to_stat(&self, data_length: usize, num_children: usize) -> Stat {
        let num_children = i32::try_from(num_children).unwrap_or(i32::MAX);
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner: self.ephemeral_owner,
            data_length: i32::try_from(data_length).unwrap_or(i32::MAX),
            num_children,
            pzxid: self.pzxid,
        }
    }
}

/// Permission bits of an ACL entry (`ZooDefs.Perms`).
pub mod perms {
    pub const READ: i32 = 1;
    pub const WRITE: i32 = 1 << 1;
    pub const CREATE: i32 = 1 << 2;
    pub const DELETE: i32 = 1 << 3;
    pub const ADMIN: i32 = 1 << 4;
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// One ACL entry: permission bits and an id in a scheme.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acl {
    pub perms: i32,
    pub scheme: String,
    pub id: String,
}

impl Acl {
    pub fn new(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            scheme: scheme.to_string(),
            id: id.to_string(),
        }
    }

    /// `ZooDefs.Ids.OPEN_ACL_UNSAFE`: world:anyone with every permission.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, "world", "anyone")]
    }

    /// `ZooDefs.Ids.READ_ACL_UNSAFE`: world:anyone may read.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::READ, "world", "anyone")]
    }
}

/// How a node is created (`CreateMode`), from ZooKeeper's flag numbers.
///
/// Containers (4) and TTL nodes (5, 6) are parsed but not yet supported:
/// creating one answers `Unimplemented` (-6). For TTL this is what a
/// default ZooKeeper 3.8 does (extended types are off); for containers it
/// is a deliberate gap (ZooKeeper 3.8 accepts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreateMode {
    Persistent,
    Ephemeral,
    PersistentSequential,
    EphemeralSequential,
    Container,
    PersistentWithTtl,
    PersistentSequentialWithTtl,
}

impl CreateMode {
    /// The mode with ZooKeeper's flag number; an unknown flag is
    /// `BadArguments`, as in `CreateMode.fromFlag`.
    pub fn from_flag(flag: i32) -> Result<CreateMode, Code> {
        Ok(match flag {
            0 => CreateMode::Persistent,
            1 => CreateMode::Ephemeral,
            2 => CreateMode::PersistentSequential,
            3 => CreateMode::EphemeralSequential,
            4 => CreateMode::Container,
            5 => CreateMode::PersistentWithTtl,
            6 => CreateMode::PersistentSequentialWithTtl,
            _ => return Err(Code::BadArguments),
        })
    }

    pub fn flag(self) -> i32 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::Ephemeral => 1,
            CreateMode::PersistentSequential => 2,
            CreateMode::EphemeralSequential => 3,
            CreateMode::Container => 4,
            CreateMode::PersistentWithTtl => 5,
            CreateMode::PersistentSequentialWithTtl => 6,
        }
    }

    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }

    pub fn is_container(self) -> bool {
        self == CreateMode::Container
    }

    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// Watch event types (`Watcher.Event.EventType`) that node changes fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    NodeCreated,
    NodeDeleted,
    NodeDataChanged,
    NodeChildrenChanged,
}

impl EventType {
    /// ZooKeeper's number for this event type.
    pub fn code(self) -> i32 {
        match self {
            EventType::NodeCreated => 1,
            EventType::NodeDeleted => 2,
            EventType::NodeDataChanged => 3,
            EventType::NodeChildrenChanged => 4,
        }
    }

    pub fn from_code(n: i32) -> Option<EventType> {
        match n {
            1 => Some(EventType::NodeCreated),
            2 => Some(EventType::NodeDeleted),
            3 => Some(EventType::NodeDataChanged),
            4 => Some(EventType::NodeChildrenChanged),
            _ => None,
        }
    }
}

/// `KeeperState.SyncConnected`, the state every node-change notification
/// carries.
pub const KEEPER_STATE_SYNC_CONNECTED: i32 = 3;

/// Request opcodes (`ZooDefs.OpCode`).
pub mod opcode {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    /// Not a ZooKeeper opcode: a proxy session takes over a live ZooKeeper session
    /// (`Request::MoveSession`). Only proxies' clients send it, never a ZooKeeper client.
    pub const MOVE_SESSION: i32 = -20;
    pub const ERROR: i32 = -1;
}
