//! ZooKeeper's result codes (`KeeperException.Code`), with their exact numbers.
//!
//! Every failed operation in this crate reports one of these; the wire layer
//! writes `code()` into the reply header's `err` field unchanged.

use thiserror::Error;

/// A ZooKeeper result code. `Ok` (0) is a code too: a failed multi reports
/// it for the operations before the failing one ("rolled back").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[repr(i32)]
pub enum Code {
    #[error("ok")]
    Ok = 0,
    #[error("system error")]
    SystemError = -1,
    #[error("runtime inconsistency")]
    RuntimeInconsistency = -2,
    #[error("data inconsistency")]
    DataInconsistency = -3,
    #[error("connection loss")]
    ConnectionLoss = -4,
    #[error("marshalling error")]
    MarshallingError = -5,
    #[error("unimplemented")]
    Unimplemented = -6,
    #[error("operation timeout")]
    OperationTimeout = -7,
    #[error("bad arguments")]
    BadArguments = -8,
    #[error("unknown session")]
    UnknownSession = -12,
    #[error("new config has no quorum")]
    NewConfigNoQuorum = -13,
    #[error("reconfig in progress")]
    ReconfigInProgress = -14,
    #[error("api error")]
    ApiError = -100,
    #[error("no node")]
    NoNode = -101,
    #[error("not authenticated")]
    NoAuth = -102,
    #[error("bad version")]
    BadVersion = -103,
    #[error("ephemeral nodes may not have children")]
    NoChildrenForEphemerals = -108,
    #[error("node exists")]
    NodeExists = -110,
    #[error("node has children")]
    NotEmpty = -111,
    #[error("session expired")]
    SessionExpired = -112,
    #[error("invalid callback")]
    InvalidCallback = -113,
    #[error("invalid ACL")]
    InvalidAcl = -114,
    #[error("authentication failed")]
    AuthFailed = -115,
    #[error("session moved")]
    SessionMoved = -118,
    #[error("not a read-only call")]
    NotReadOnly = -119,
    #[error("ephemeral on local session")]
    EphemeralOnLocalSession = -120,
    #[error("no watcher")]
    NoWatcher = -121,
    #[error("request timeout")]
    RequestTimeout = -122,
    #[error("reconfig disabled")]
    ReconfigDisabled = -123,
    #[error("session closed, SASL authentication required")]
    SessionClosedRequireSaslAuth = -124,
    #[error("quota exceeded")]
    QuotaExceeded = -125,
    #[error("operation throttled")]
    ThrottledOp = -127,
}

/// Every code with its number, in ZooKeeper's order (for `from_code`).
const TABLE: &[(Code, i32)] = &[
    (Code::Ok, 0),
    (Code::SystemError, -1),
    (Code::RuntimeInconsistency, -2),
    (Code::DataInconsistency, -3),
    (Code::ConnectionLoss, -4),
    (Code::MarshallingError, -5),
    (Code::Unimplemented, -6),
    (Code::OperationTimeout, -7),
    (Code::BadArguments, -8),
    (Code::UnknownSession, -12),
    (Code::NewConfigNoQuorum, -13),
    (Code::ReconfigInProgress, -14),
    (Code::ApiError, -100),
    (Code::NoNode, -101),
    (Code::NoAuth, -102),
    (Code::BadVersion, -103),
    (Code::NoChildrenForEphemerals, -108),
    (Code::NodeExists, -110),
    (Code::NotEmpty, -111),
    (Code::SessionExpired, -112),
    (Code::InvalidCallback, -113),
    (Code::InvalidAcl, -114),
    (Code::AuthFailed, -115),
    (Code::SessionMoved, -118),
    (Code::NotReadOnly, -119),
    (Code::EphemeralOnLocalSession, -120),
    (Code::NoWatcher, -121),
    (Code::RequestTimeout, -122),
    (Code::ReconfigDisabled, -123),
    (Code::SessionClosedRequireSaslAuth, -124),
    (Code::QuotaExceeded, -125),
    (Code::ThrottledOp, -127),
];

impl Code {
    /// ZooKeeper's number for this code.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code with ZooKeeper's number `n`, if there is one.
    pub fn from_code(n: i32) -> Option<Code> {
        TABLE.iter().find(|(_, v)| *v == n).map(|(c, _)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_zookeeper() {
        assert_eq!(Code::Ok.code(), 0);
        assert_eq!(Code::RuntimeInconsistency.code(), -2);
        assert_eq!(Code::MarshallingError.code(), -5);
        assert_eq!(Code::Unimplemented.code(), -6);
        assert_eq!(Code::BadArguments.code(), -8);
        assert_eq!(Code::NoNode.code(), -101);
        assert_eq!(Code::NoAuth.code(), -102);
        assert_eq!(Code::BadVersion.code(), -103);
        assert_eq!(Code::NoChildrenForEphemerals.code(), -108);
        assert_eq!(Code::NodeExists.code(), -110);
        assert_eq!(Code::NotEmpty.code(), -111);
        assert_eq!(Code::SessionExpired.code(), -112);
        assert_eq!(Code::InvalidAcl.code(), -114);
        assert_eq!(Code::SessionMoved.code(), -118);
        assert_eq!(Code::ThrottledOp.code(), -127);
    }

    #[test]
    fn from_code_round_trips() {
        for (c, n) in TABLE {
            assert_eq!(Code::from_code(*n), Some(*c));
            assert_eq!(c.code(), *n);
        }
        assert_eq!(Code::from_code(-9), None);
        assert_eq!(Code::from_code(1), None);
    }
}
