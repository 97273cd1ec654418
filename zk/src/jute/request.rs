//! Request bodies: decoding a request payload into the tree's [`Request`]
//! (or a [`Special`]) on the server, and encoding one on the client.
//!
//! The tree's `Request` cannot tell create (1) from create2 (15),
//! createTTL (21) or createContainer (19), and does not hold createTTL's
//! ttl, so decoding also returns a [`Shape`]: the wire form, which picks
//! the reply's body and lets the request be encoded again. Layouts follow
//! `zookeeper.jute` (CreateRequest, CreateTTLRequest, DeleteRequest, ...)
//! and `MultiOperationRecord` for multi.

use crate::op::Request;
use crate::types::{opcode, CreateMode};

use super::prim::{Reader, Writer};
use super::records::{read_acl_vec, write_acl_vec, MultiHeader, RequestHeader};
use super::special::{read_special, Special};
use super::JuteError;

/// The wire form of a tree request: its opcode, and what the tree's
/// `Request` does not hold (createTTL's ttl, each multi member's form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// create (1): the reply is the path only.
    Create,
    /// create2 (15): the reply is the path and the Stat.
    Create2,
    /// createTTL (21): a create2 reply; the request carries a ttl.
    CreateTtl {
        ttl: i64,
    },
    /// createContainer (19): a create2 reply.
    CreateContainer,
    Delete,
    Exists,
    GetData,
    SetData,
    GetAcl,
    SetAcl,
    /// getChildren (8): names only.
    GetChildren,
    /// getChildren2 (12): names and the Stat.
    GetChildren2,
    Sync,
    Check,
    /// multi (14), with each member's form.
    Multi(Vec<Shape>),
    GetEphemerals,
    GetAllChildrenNumber,
    CloseSession,
}

impl Shape {
    /// The opcode this form is sent with.
    pub fn opcode(&self) -> i32 {
        match self {
            Shape::Create => opcode::CREATE,
            Shape::Create2 => opcode::CREATE2,
            Shape::CreateTtl { .. } => opcode::CREATE_TTL,
            Shape::CreateContainer => opcode::CREATE_CONTAINER,
            Shape::Delete => opcode::DELETE,
            Shape::Exists => opcode::EXISTS,
            Shape::GetData => opcode::GET_DATA,
            Shape::SetData => opcode::SET_DATA,
            Shape::GetAcl => opcode::GET_ACL,
            Shape::SetAcl => opcode::SET_ACL,
            Shape::GetChildren => opcode::GET_CHILDREN,
            Shape::GetChildren2 => opcode::GET_CHILDREN2,
            Shape::Sync => opcode::SYNC,
            Shape::Check => opcode::CHECK,
            Shape::Multi(_) => opcode::MULTI,
            Shape::GetEphemerals => opcode::GET_EPHEMERALS,
            Shape::GetAllChildrenNumber => opcode::GET_ALL_CHILDREN_NUMBER,
            Shape::CloseSession => opcode::CLOSE_SESSION,
        }
    }

    /// Whether a create's reply carries the Stat (all but create 1).
    pub fn create_has_stat(&self) -> bool {
        !matches!(self, Shape::Create)
    }

    /// The form a client would send `req` in: create2 for creates
    /// (createContainer for a container; use [`Shape::CreateTtl`]
    /// explicitly to send a ttl), getChildren2 when `with_stat`. `None`
    /// for createSession, which has no request form (the connect handshake
    /// creates sessions).
    pub fn for_request(req: &Request) -> Option<Shape> {
        Some(match req {
            Request::Create { mode, .. } => {
                if *mode == CreateMode::Container {
                    Shape::CreateContainer
                } else {
                    Shape::Create2
                }
            }
            Request::Delete { .. } => Shape::Delete,
            Request::Exists { .. } => Shape::Exists,
            Request::GetData { .. } => Shape::GetData,
            Request::SetData { .. } => Shape::SetData,
            Request::GetAcl { .. } => Shape::GetAcl,
            Request::SetAcl { .. } => Shape::SetAcl,
            Request::GetChildren { with_stat, .. } => {
                if *with_stat {
                    Shape::GetChildren2
                } else {
                    Shape::GetChildren
                }
            }
            Request::Sync { .. } => Shape::Sync,
            Request::Check { .. } => Shape::Check,
            Request::Multi(ops) => Shape::Multi(
                ops.iter()
                    .map(Shape::for_request)
                    .collect::<Option<Vec<_>>>()?,
            ),
            Request::GetEphemerals { .. } => Shape::GetEphemerals,
            Request::GetAllChildrenNumber { .. } => Shape::GetAllChildrenNumber,
            Request::CreateSession { .. } | Request::MoveSession { .. } => return None,
            Request::CloseSession => Shape::CloseSession,
        })
    }
}

/// A decoded request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A request for the tree, and the form its reply takes.
    Tree { request: Request, shape: Shape },
    /// A request the tree does not model.
    Special(Special),
}

/// Splits a request payload into its header and body.
pub fn split_request(payload: &[u8]) -> Result<(RequestHeader, &[u8]), JuteError> {
    let mut r = Reader::new(payload);
    let header = RequestHeader::read(&mut r)?;
    Ok((header, r.rest()))
}

/// Decodes a request as a proxy's log carries it: createSession (opcode -10, body the
/// timeout) and moveSession (opcode -20, body the session then the timeout), which only
/// proxies' clients send, or a request [`decode_request`] decodes. A ZooKeeper client's
/// packet goes through [`decode_request`], which knows neither.
pub fn decode_logged_request(op: i32, body: &[u8]) -> Result<Decoded, JuteError> {
    let mut r = Reader::new(body);
    let request = match op {
        opcode::CREATE_SESSION => Request::CreateSession {
            timeout_ms: r.read_i32()?,
        },
        opcode::MOVE_SESSION => Request::MoveSession {
            session: r.read_i64()?,
            timeout_ms: r.read_i32()?,
        },
        _ => return decode_request(op, body),
    };
    // Their replies have no body, as closeSession's.
    Ok(Decoded::Tree {
        request,
        shape: Shape::CloseSession,
    })
}

/// Decodes the body of a request with opcode `op`, refusing lengths over
/// `DEFAULT_MAX_BUFFER` (use [`read_request`] for another limit). Trailing
/// bytes are ignored, as ZooKeeper does.
pub fn decode_request(op: i32, body: &[u8]) -> Result<Decoded, JuteError> {
    read_request(op, &mut Reader::new(body))
}

/// Reads the body of a request with opcode `op`.
pub fn read_request(op: i32, r: &mut Reader<'_>) -> Result<Decoded, JuteError> {
    if let Some(special) = read_special(op, r)? {
        return Ok(Decoded::Special(special));
    }
    let (request, shape) = match op {
        opcode::MULTI => read_multi(r)?,
        opcode::CLOSE_SESSION => (Request::CloseSession, Shape::CloseSession),
        opcode::EXISTS => (
            Request::Exists {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            Shape::Exists,
        ),
        opcode::GET_DATA => (
            Request::GetData {
                path: r.read_string()?,
                watch: r.read_bool()?,
            },
            Shape::GetData,
        ),
        opcode::GET_ACL => (
            Request::GetAcl {
                path: r.read_string()?,
            },
            Shape::GetAcl,
        ),
        opcode::SET_ACL => (
            Request::SetAcl {
                path: r.read_string()?,
                acl: read_acl_vec(r)?,
                version: r.read_i32()?,
            },
            Shape::SetAcl,
        ),
        opcode::GET_CHILDREN | opcode::GET_CHILDREN2 => {
            let with_stat = op == opcode::GET_CHILDREN2;
            let request = Request::GetChildren {
                path: r.read_string()?,
                watch: r.read_bool()?,
                with_stat,
            };
            let shape = if with_stat {
                Shape::GetChildren2
            } else {
                Shape::GetChildren
            };
            (request, shape)
        }
        opcode::SYNC => (
            Request::Sync {
                path: r.read_string()?,
            },
            Shape::Sync,
        ),
        opcode::GET_EPHEMERALS => (
            Request::GetEphemerals {
                prefix: r.read_string()?,
            },
            Shape::GetEphemerals,
        ),
        opcode::GET_ALL_CHILDREN_NUMBER => (
            Request::GetAllChildrenNumber {
                path: r.read_string()?,
            },
            Shape::GetAllChildrenNumber,
        ),
        _ => match read_write_op(op, r, false)? {
            Some((request, shape)) => (request, shape),
            None => return Err(JuteError::UnknownOpcode(op)),
        },
    };
    Ok(Decoded::Tree { request, shape })
}

/// The ops allowed in a multi (create, create2, createTTL,
/// createContainer, delete, setData, check); `None` for any other opcode.
///
/// Inside a multi (`in_multi`) ZooKeeper reads the members differently
/// (`MultiOperationRecord`): invalid create flags are a marshalling error,
/// and a createTTL member with a non-TTL mode is a plain create (1).
fn read_write_op(
    op: i32,
    r: &mut Reader<'_>,
    in_multi: bool,
) -> Result<Option<(Request, Shape)>, JuteError> {
    Ok(Some(match op {
        opcode::CREATE | opcode::CREATE2 | opcode::CREATE_CONTAINER | opcode::CREATE_TTL => {
            let path = r.read_string()?;
            let data = r.read_buffer()?;
            let acl = read_acl_vec(r)?;
            let flags = r.read_i32()?;
            let mode = CreateMode::from_flag(flags).map_err(|_| {
                if in_multi {
                    JuteError::BadMultiFlags(flags)
                } else {
                    JuteError::BadFlags(flags)
                }
            })?;
            let shape = match op {
                opcode::CREATE => Shape::Create,
                opcode::CREATE2 => Shape::Create2,
                opcode::CREATE_CONTAINER => Shape::CreateContainer,
                _ => {
                    // `EphemeralType.validateTTL`: a ttl with a non-TTL mode
                    // is BadArguments; a TTL mode reaches the tree, which
                    // answers Unimplemented as a default ZooKeeper does.
                    let ttl = r.read_i64()?;
                    if mode.is_ttl() {
                        Shape::CreateTtl { ttl }
                    } else if in_multi {
                        Shape::Create
                    } else if ttl >= 0 {
                        return Err(JuteError::BadTtl(ttl));
                    } else {
                        Shape::CreateTtl { ttl }
                    }
                }
            };
            let request = Request::Create {
                path,
                data,
                acl,
                mode,
            };
            (request, shape)
        }
        opcode::DELETE => (
            Request::Delete {
                path: r.read_string()?,
                version: r.read_i32()?,
            },
            Shape::Delete,
        ),
        opcode::SET_DATA => (
            Request::SetData {
                path: r.read_string()?,
                data: r.read_buffer()?,
                version: r.read_i32()?,
            },
            Shape::SetData,
        ),
        opcode::CHECK => (
            Request::Check {
                path: r.read_string()?,
                version: r.read_i32()?,
            },
            Shape::Check,
        ),
        _ => return Ok(None),
    }))
}

/// A multi: `{type, done, err}` headers, each followed by its op's body,
/// until a header with `done` set (`MultiOperationRecord.deserialize`).
fn read_multi(r: &mut Reader<'_>) -> Result<(Request, Shape), JuteError> {
    let mut ops = Vec::new();
    let mut shapes = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            break;
        }
        let Some((op, shape)) = read_write_op(h.op, r, true)? else {
            return Err(JuteError::BadMultiOp(h.op));
        };
        ops.push(op);
        shapes.push(shape);
    }
    Ok((Request::Multi(ops), Shape::Multi(shapes)))
}

/// Encodes a request as the framed packet a client sends: the header
/// `{xid, shape.opcode()}` and the body. The request must fit the shape
/// (a create for the create forms, `with_stat` matching getChildren2, a
/// multi of writes with one member form per op).
pub fn encode_request(xid: i32, req: &Request, shape: &Shape) -> Result<Vec<u8>, JuteError> {
    let mut w = Writer::framed();
    RequestHeader {
        xid,
        op: shape.opcode(),
    }
    .write(&mut w);
    write_body(&mut w, req, shape)?;
    w.finish_frame()
}

fn write_body(w: &mut Writer, req: &Request, shape: &Shape) -> Result<(), JuteError> {
    match (req, shape) {
        (
            Request::Create {
                path,
                data,
                acl,
                mode,
            },
            Shape::Create | Shape::Create2 | Shape::CreateContainer | Shape::CreateTtl { .. },
        ) => {
            w.write_string(path);
            w.write_buffer(data);
            write_acl_vec(w, acl);
            w.write_i32(mode.flag());
            if let Shape::CreateTtl { ttl } = shape {
                w.write_i64(*ttl);
            }
        }
        (Request::Delete { path, version }, Shape::Delete)
        | (Request::Check { path, version }, Shape::Check) => {
            w.write_string(path);
            w.write_i32(*version);
        }
        (Request::Exists { path, watch }, Shape::Exists)
        | (Request::GetData { path, watch }, Shape::GetData) => {
            w.write_string(path);
            w.write_bool(*watch);
        }
        (
            Request::GetChildren {
                path,
                watch,
                with_stat,
            },
            Shape::GetChildren | Shape::GetChildren2,
        ) if *with_stat == (*shape == Shape::GetChildren2) => {
            w.write_string(path);
            w.write_bool(*watch);
        }
        (
            Request::SetData {
                path,
                data,
                version,
            },
            Shape::SetData,
        ) => {
            w.write_string(path);
            w.write_buffer(data);
            w.write_i32(*version);
        }
        (Request::SetAcl { path, acl, version }, Shape::SetAcl) => {
            w.write_string(path);
            write_acl_vec(w, acl);
            w.write_i32(*version);
        }
        (Request::GetAcl { path }, Shape::GetAcl)
        | (Request::Sync { path }, Shape::Sync)
        | (Request::GetAllChildrenNumber { path }, Shape::GetAllChildrenNumber)
        | (Request::GetEphemerals { prefix: path }, Shape::GetEphemerals) => {
            w.write_string(path);
        }
        (Request::CloseSession, Shape::CloseSession) => {}
        (Request::Multi(ops), Shape::Multi(shapes)) => {
            if ops.len() != shapes.len() {
                return Err(JuteError::ShapeMismatch("one member form per multi op"));
            }
            for (op, shape) in ops.iter().zip(shapes) {
                if !matches!(
                    op,
                    Request::Create { .. }
                        | Request::Delete { .. }
                        | Request::SetData { .. }
                        | Request::Check { .. }
                ) {
                    return Err(JuteError::BadMultiOp(op.opcode()));
                }
                MultiHeader {
                    op: shape.opcode(),
                    done: false,
                    err: -1,
                }
                .write(w);
                write_body(w, op, shape)?;
            }
            MultiHeader::END.write(w);
        }
        _ => return Err(JuteError::ShapeMismatch("request and form differ")),
    }
    Ok(())
}
