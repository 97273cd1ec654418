//! Reply bodies for tree requests: encoding the tree's result on the
//! server, decoding it on the client, and watch notifications.
//!
//! A reply is `{xid, zxid, err}` and, only when err is 0, a body
//! (`FinalRequestProcessor`). A multi always has err 0: a failed multi is
//! a list of `ErrorResult`s (`{-1, false, code}` then the code as an int),
//! and every multi reply ends with `{-1, true, -1}` (`MultiResponse`).

use crate::code::Code;
use crate::op::{OpResult, Response};
use crate::types::{opcode, Stat};

use super::prim::{Reader, Writer};
use super::records::{
    read_acl_vec, read_stat, write_acl_vec, write_stat, MultiHeader, ReplyHeader, WatcherEvent,
};
use super::request::Shape;
use super::{xid, JuteError};

/// The `Code` with ZooKeeper's number `n`.
pub(super) fn code_of(n: i32) -> Result<Code, JuteError> {
    Code::from_code(n).ok_or(JuteError::UnknownCode(n))
}

/// An `ErrorResult` inside a multi or multiRead reply.
pub(super) fn write_error_result(w: &mut Writer, code: Code) {
    MultiHeader {
        op: opcode::ERROR,
        done: false,
        err: code.code(),
    }
    .write(w);
    w.write_i32(code.code());
}

/// Encodes the reply to a tree request as a framed packet: the header
/// `{xid, zxid, err}` (err from `result`) and, on success, the body.
/// `shape` is the form the request came in ([`super::Decoded::Tree`]); it
/// decides whether a create's reply has the Stat (not for create 1, also
/// inside a multi) and whether a getChildren reply has one (getChildren2).
pub fn encode_response(
    xid: i32,
    zxid: i64,
    result: &Result<Response, Code>,
    shape: &Shape,
) -> Result<Vec<u8>, JuteError> {
    encode_reply(xid, zxid, result, |w, response| {
        write_body(w, response, shape)
    })
}

/// A framed reply: the header `{xid, zxid, err}` (err from `result`) and, on success,
/// the body `body` writes.
pub(super) fn encode_reply<T>(
    xid: i32,
    zxid: i64,
    result: &Result<T, Code>,
    body: impl FnOnce(&mut Writer, &T),
) -> Result<Vec<u8>, JuteError> {
    let mut w = Writer::framed();
    let err = match result {
        Ok(_) => 0,
        Err(code) => code.code(),
    };
    ReplyHeader { xid, zxid, err }.write(&mut w);
    if let Ok(b) = result {
        body(&mut w, b);
    }
    w.finish_frame()
}

fn write_body(w: &mut Writer, response: &Response, shape: &Shape) {
    match response {
        Response::Create { path, stat } => {
            w.write_string(path);
            if shape.create_has_stat() {
                write_stat(w, stat);
            }
        }
        Response::Stat(stat) => write_stat(w, stat),
        Response::Data { data, stat } => {
            w.write_buffer(data);
            write_stat(w, stat);
        }
        Response::Children { names, stat } => {
            w.write_string_vec(names);
            if *shape != Shape::GetChildren {
                write_stat(w, stat);
            }
        }
        Response::Acl { acl, stat } => {
            write_acl_vec(w, acl);
            write_stat(w, stat);
        }
        Response::Sync { path } => w.write_string(path),
        Response::Multi(results) => {
            let members: &[Shape] = match shape {
                Shape::Multi(members) => members,
                _ => &[],
            };
            for (i, result) in results.iter().enumerate() {
                write_op_result(w, result, members.get(i).unwrap_or(&Shape::Create2));
            }
            MultiHeader::END.write(w);
        }
        Response::Ephemerals(paths) => w.write_string_vec(paths),
        Response::AllChildrenNumber(n) => w.write_i32(*n),
        Response::Empty => {}
    }
}

fn write_op_result(w: &mut Writer, result: &OpResult, shape: &Shape) {
    let ok = |w: &mut Writer, op: i32| {
        MultiHeader {
            op,
            done: false,
            err: 0,
        }
        .write(w)
    };
    match result {
        OpResult::Create { path, stat } => {
            if shape.create_has_stat() {
                ok(w, opcode::CREATE2);
                w.write_string(path);
                write_stat(w, stat);
            } else {
                ok(w, opcode::CREATE);
                w.write_string(path);
            }
        }
        OpResult::Delete => ok(w, opcode::DELETE),
        OpResult::SetData { stat } => {
            ok(w, opcode::SET_DATA);
            write_stat(w, stat);
        }
        OpResult::Check => ok(w, opcode::CHECK),
        OpResult::Error(code) => write_error_result(w, *code),
    }
}

/// Splits a reply payload into its header and body.
/// A reply that is only a header (an error, or a reply with no body), unframed.
pub fn header_reply(xid: i32, zxid: i64, err: i32) -> Vec<u8> {
    let mut w = Writer::new();
    ReplyHeader { xid, zxid, err }.write(&mut w);
    w.into_inner()
}

pub fn split_reply(payload: &[u8]) -> Result<(ReplyHeader, &[u8]), JuteError> {
    let mut r = Reader::new(payload);
    let header = ReplyHeader::read(&mut r)?;
    Ok((header, r.rest()))
}

/// Decodes the reply body to a request sent in form `shape`, given the
/// reply header's `err`: a nonzero err is `Ok(Err(code))`. A create (1)
/// reply has no Stat and a getChildren (8) reply none either: both decode
/// with `Stat::default()`. A top-level check's body is a Stat if one was
/// sent (ZooKeeper sends a `SetDataResponse`), else `Response::Empty`.
pub fn decode_response(
    shape: &Shape,
    err: i32,
    body: &[u8],
) -> Result<Result<Response, Code>, JuteError> {
    read_response(shape, err, &mut Reader::new(body))
}

/// [`decode_response`] from a reader (for another length limit).
pub fn read_response(
    shape: &Shape,
    err: i32,
    r: &mut Reader<'_>,
) -> Result<Result<Response, Code>, JuteError> {
    if err != 0 {
        return code_of(err).map(Err);
    }
    Ok(Ok(match shape {
        Shape::Create => Response::Create {
            path: r.read_string()?,
            stat: Stat::default(),
        },
        Shape::Create2 | Shape::CreateTtl { .. } | Shape::CreateContainer => Response::Create {
            path: r.read_string()?,
            stat: read_stat(r)?,
        },
        Shape::Delete | Shape::CloseSession => Response::Empty,
        Shape::Check => {
            if r.remaining() == 0 {
                Response::Empty
            } else {
                Response::Stat(read_stat(r)?)
            }
        }
        Shape::Exists | Shape::SetData | Shape::SetAcl => Response::Stat(read_stat(r)?),
        Shape::GetData => Response::Data {
            data: r.read_buffer()?,
            stat: read_stat(r)?,
        },
        Shape::GetAcl => Response::Acl {
            acl: read_acl_vec(r)?,
            stat: read_stat(r)?,
        },
        Shape::GetChildren => Response::Children {
            names: r.read_string_vec()?,
            stat: Stat::default(),
        },
        Shape::GetChildren2 => Response::Children {
            names: r.read_string_vec()?,
            stat: read_stat(r)?,
        },
        Shape::Sync => Response::Sync {
            path: r.read_string()?,
        },
        Shape::Multi(_) => Response::Multi(read_multi_results(r)?),
        Shape::GetEphemerals => Response::Ephemerals(r.read_string_vec()?),
        Shape::GetAllChildrenNumber => Response::AllChildrenNumber(r.read_i32()?),
    }))
}

/// A multi reply's results, until a header with `done` set
/// (`MultiResponse.deserialize`).
fn read_multi_results(r: &mut Reader<'_>) -> Result<Vec<OpResult>, JuteError> {
    let mut results = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(results);
        }
        results.push(match h.op {
            opcode::CREATE => OpResult::Create {
                path: r.read_string()?,
                stat: Stat::default(),
            },
            opcode::CREATE2 => OpResult::Create {
                path: r.read_string()?,
                stat: read_stat(r)?,
            },
            opcode::DELETE => OpResult::Delete,
            opcode::SET_DATA => OpResult::SetData {
                stat: read_stat(r)?,
            },
            opcode::CHECK => OpResult::Check,
            opcode::ERROR => OpResult::Error(code_of(r.read_i32()?)?),
            op => return Err(JuteError::BadMultiOp(op)),
        });
    }
}

/// A watch notification as a framed packet: header `{-1, -1, 0}` and the
/// event.
pub fn encode_notification(event: &WatcherEvent) -> Result<Vec<u8>, JuteError> {
    let mut w = Writer::framed();
    ReplyHeader {
        xid: xid::NOTIFICATION,
        zxid: -1,
        err: 0,
    }
    .write(&mut w);
    event.write(&mut w);
    w.finish_frame()
}

/// Decodes a notification's body (the reply header had xid -1).
pub fn decode_notification(body: &[u8]) -> Result<WatcherEvent, JuteError> {
    WatcherEvent::read(&mut Reader::new(body))
}
