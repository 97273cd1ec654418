//! Requests the tree does not model, and their replies: ping, auth,
//! setWatches / setWatches2, addWatch, removeWatches, checkWatches,
//! whoAmI, multiRead, reconfig and sasl.
//!
//! Layouts follow `zookeeper.jute` (AuthPacket, SetWatches, SetWatches2,
//! AddWatchRequest, RemoveWatchesRequest, CheckWatchesRequest,
//! ReconfigRequest, GetSASLRequest, SetSASLResponse, WhoAmIResponse) and
//! `MultiOperationRecord` / `MultiResponse` for multiRead; the reply
//! bodies follow `FinalRequestProcessor` (addWatch answers an
//! `ErrorResponse` of 0; setWatches, removeWatches, checkWatches, ping
//! and auth answer with a header only).

use bytes::Bytes;

use crate::code::Code;
use crate::op::Request;
use crate::types::{opcode, Stat};

use super::prim::{Reader, Writer};
use super::records::{read_stat, write_stat, MultiHeader, RequestHeader};
use super::JuteError;

/// The watch lists a client re-registers on reconnect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetWatches {
    pub relative_zxid: i64,
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    /// setWatches2 only (empty, and not sent, for setWatches).
    pub persistent: Vec<String>,
    /// setWatches2 only (empty, and not sent, for setWatches).
    pub persistent_recursive: Vec<String>,
}

/// A request that the tree's `Request` has no variant for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Special {
    /// ping (11), no body; sent with xid -2.
    Ping,
    /// auth (100); sent with xid -4.
    Auth {
        auth_type: i32,
        scheme: String,
        auth: Bytes,
    },
    /// setWatches (101); sent with xid -8.
    SetWatches(SetWatches),
    /// setWatches2 (105), with the persistent lists; sent with xid -8.
    SetWatches2(SetWatches),
    /// addWatch (106): `mode` 0 persistent, 1 persistent-recursive.
    AddWatch { path: String, mode: i32 },
    /// removeWatches (18): `watcher_type` 1 children, 2 data, 3 any.
    RemoveWatches { path: String, watcher_type: i32 },
    /// checkWatches (17).
    CheckWatches { path: String, watcher_type: i32 },
    /// whoAmI (107), no body.
    WhoAmI,
    /// multiRead (22): `GetChildren` (without Stat) and `GetData` requests,
    /// each answered on its own. ZooKeeper sets no watches for them, but
    /// the wire's watch flag is kept as sent.
    MultiRead(Vec<Request>),
    /// reconfig (16); null strings are `None`.
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        new_members: Option<String>,
        cur_config_id: i64,
    },
    /// sasl (102).
    Sasl { token: Bytes },
}

impl Special {
    pub fn opcode(&self) -> i32 {
        match self {
            Special::Ping => opcode::PING,
            Special::Auth { .. } => opcode::AUTH,
            Special::SetWatches(_) => opcode::SET_WATCHES,
            Special::SetWatches2(_) => opcode::SET_WATCHES2,
            Special::AddWatch { .. } => opcode::ADD_WATCH,
            Special::RemoveWatches { .. } => opcode::REMOVE_WATCHES,
            Special::CheckWatches { .. } => opcode::CHECK_WATCHES,
            Special::WhoAmI => opcode::WHO_AM_I,
            Special::MultiRead(_) => opcode::MULTI_READ,
            Special::Reconfig { .. } => opcode::RECONFIG,
            Special::Sasl { .. } => opcode::SASL,
        }
    }
}

/// One result of a multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    /// getChildren: the names.
    Children(Vec<String>),
    /// getData: the data and the Stat.
    Data { data: Bytes, stat: Stat },
    /// This read failed with this code (the others still ran).
    Error(Code),
}

/// One of whoAmI's answers (`ClientInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub auth_scheme: String,
    pub user: String,
}

/// The body of a successful reply to a [`Special`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecialResponse {
    /// ping, auth, setWatches, setWatches2, removeWatches, checkWatches:
    /// no body.
    Empty,
    /// addWatch: an `ErrorResponse` of 0.
    AddWatch,
    WhoAmI(Vec<ClientInfo>),
    MultiRead(Vec<ReadResult>),
    /// reconfig: the new configuration and the config node's Stat.
    Reconfig {
        data: Bytes,
        stat: Stat,
    },
    Sasl {
        token: Bytes,
    },
}

fn read_set_watches(r: &mut Reader<'_>, v2: bool) -> Result<SetWatches, JuteError> {
    let mut sw = SetWatches {
        relative_zxid: r.read_i64()?,
        data: r.read_string_vec()?,
        exist: r.read_string_vec()?,
        child: r.read_string_vec()?,
        ..SetWatches::default()
    };
    if v2 {
        sw.persistent = r.read_string_vec()?;
        sw.persistent_recursive = r.read_string_vec()?;
    }
    Ok(sw)
}

fn read_multi_read(r: &mut Reader<'_>) -> Result<Vec<Request>, JuteError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(ops);
        }
        let path = r.read_string()?;
        let watch = r.read_bool()?;
        ops.push(match h.op {
            opcode::GET_CHILDREN => Request::GetChildren {
                path,
                watch,
                with_stat: false,
            },
            opcode::GET_DATA => Request::GetData { path, watch },
            op => return Err(JuteError::BadMultiOp(op)),
        });
    }
}

/// Reads the body of a special request; `Ok(None)` when `op` is not one.
pub(super) fn read_special(op: i32, r: &mut Reader<'_>) -> Result<Option<Special>, JuteError> {
    Ok(Some(match op {
        opcode::PING => Special::Ping,
        opcode::WHO_AM_I => Special::WhoAmI,
        opcode::AUTH => Special::Auth {
            auth_type: r.read_i32()?,
            scheme: r.read_string()?,
            auth: r.read_buffer()?,
        },
        opcode::SET_WATCHES => Special::SetWatches(read_set_watches(r, false)?),
        opcode::SET_WATCHES2 => Special::SetWatches2(read_set_watches(r, true)?),
        opcode::ADD_WATCH => Special::AddWatch {
            path: r.read_string()?,
            mode: r.read_i32()?,
        },
        opcode::REMOVE_WATCHES => Special::RemoveWatches {
            path: r.read_string()?,
            watcher_type: r.read_i32()?,
        },
        opcode::CHECK_WATCHES => Special::CheckWatches {
            path: r.read_string()?,
            watcher_type: r.read_i32()?,
        },
        opcode::MULTI_READ => Special::MultiRead(read_multi_read(r)?),
        opcode::RECONFIG => Special::Reconfig {
            joining: r.read_opt_string()?,
            leaving: r.read_opt_string()?,
            new_members: r.read_opt_string()?,
            cur_config_id: r.read_i64()?,
        },
        opcode::SASL => Special::Sasl {
            token: r.read_buffer()?,
        },
        _ => return Ok(None),
    }))
}

fn write_set_watches(w: &mut Writer, sw: &SetWatches, v2: bool) {
    w.write_i64(sw.relative_zxid);
    w.write_string_vec(&sw.data);
    w.write_string_vec(&sw.exist);
    w.write_string_vec(&sw.child);
    if v2 {
        w.write_string_vec(&sw.persistent);
        w.write_string_vec(&sw.persistent_recursive);
    }
}

/// Encodes a special request as a framed packet with header
/// `{xid, special.opcode()}` (use the fixed xids in `jute::xid` for ping,
/// auth and setWatches). A multiRead member other than getChildren or
/// getData is refused.
pub fn encode_special_request(xid: i32, special: &Special) -> Result<Vec<u8>, JuteError> {
    let mut w = Writer::framed();
    RequestHeader {
        xid,
        op: special.opcode(),
    }
    .write(&mut w);
    match special {
        Special::Ping | Special::WhoAmI => {}
        Special::Auth {
            auth_type,
            scheme,
            auth,
        } => {
            w.write_i32(*auth_type);
            w.write_string(scheme);
            w.write_buffer(auth);
        }
        Special::SetWatches(sw) => write_set_watches(&mut w, sw, false),
        Special::SetWatches2(sw) => write_set_watches(&mut w, sw, true),
        Special::AddWatch { path, mode } => {
            w.write_string(path);
            w.write_i32(*mode);
        }
        Special::RemoveWatches { path, watcher_type }
        | Special::CheckWatches { path, watcher_type } => {
            w.write_string(path);
            w.write_i32(*watcher_type);
        }
        Special::MultiRead(ops) => {
            for op in ops {
                let (code, path, watch) = match op {
                    Request::GetChildren {
                        path,
                        watch,
                        with_stat: false,
                    } => (opcode::GET_CHILDREN, path, *watch),
                    Request::GetData { path, watch } => (opcode::GET_DATA, path, *watch),
                    other => return Err(JuteError::BadMultiOp(other.opcode())),
                };
                MultiHeader {
                    op: code,
                    done: false,
                    err: -1,
                }
                .write(&mut w);
                w.write_string(path);
                w.write_bool(watch);
            }
            MultiHeader::END.write(&mut w);
        }
        Special::Reconfig {
            joining,
            leaving,
            new_members,
            cur_config_id,
        } => {
            w.write_opt_string(joining.as_deref());
            w.write_opt_string(leaving.as_deref());
            w.write_opt_string(new_members.as_deref());
            w.write_i64(*cur_config_id);
        }
        Special::Sasl { token } => w.write_buffer(token),
    }
    w.finish_frame()
}

/// Encodes the reply to a special request as a framed packet: the header
/// `{xid, zxid, err}` (err from `result`) and, on success, the body.
pub fn encode_special_response(
    xid: i32,
    zxid: i64,
    result: &Result<SpecialResponse, Code>,
) -> Result<Vec<u8>, JuteError> {
    super::response::encode_reply(xid, zxid, result, write_special_body)
}

fn write_special_body(w: &mut Writer, body: &SpecialResponse) {
    match body {
        SpecialResponse::Empty => {}
        SpecialResponse::AddWatch => w.write_i32(0),
        SpecialResponse::WhoAmI(infos) => w.write_vec(infos, |w, info| {
            w.write_string(&info.auth_scheme);
            w.write_string(&info.user);
        }),
        SpecialResponse::MultiRead(results) => {
            for result in results {
                match result {
                    ReadResult::Children(names) => {
                        MultiHeader {
                            op: opcode::GET_CHILDREN,
                            done: false,
                            err: 0,
                        }
                        .write(w);
                        w.write_string_vec(names);
                    }
                    ReadResult::Data { data, stat } => {
                        MultiHeader {
                            op: opcode::GET_DATA,
                            done: false,
                            err: 0,
                        }
                        .write(w);
                        w.write_buffer(data);
                        write_stat(w, stat);
                    }
                    ReadResult::Error(code) => super::response::write_error_result(w, *code),
                }
            }
            MultiHeader::END.write(w);
        }
        SpecialResponse::Reconfig { data, stat } => {
            w.write_buffer(data);
            write_stat(w, stat);
        }
        SpecialResponse::Sasl { token } => w.write_buffer(token),
    }
}

/// Decodes the reply body to `asked`, given the reply header's `err`: a
/// nonzero err is `Ok(Err(code))` (and any body is ignored).
pub fn decode_special_response(
    asked: &Special,
    err: i32,
    body: &[u8],
) -> Result<Result<SpecialResponse, Code>, JuteError> {
    if err != 0 {
        return super::response::code_of(err).map(Err);
    }
    let r = &mut Reader::new(body);
    Ok(Ok(match asked {
        Special::Ping
        | Special::Auth { .. }
        | Special::SetWatches(_)
        | Special::SetWatches2(_)
        | Special::RemoveWatches { .. }
        | Special::CheckWatches { .. } => SpecialResponse::Empty,
        Special::AddWatch { .. } => {
            r.read_i32()?;
            SpecialResponse::AddWatch
        }
        Special::WhoAmI => SpecialResponse::WhoAmI(r.read_vec(|r| {
            Ok(ClientInfo {
                auth_scheme: r.read_string()?,
                user: r.read_string()?,
            })
        })?),
        Special::MultiRead(_) => {
            let mut results = Vec::new();
            loop {
                let h = MultiHeader::read(r)?;
                if h.done {
                    break;
                }
                results.push(match h.op {
                    opcode::GET_CHILDREN => ReadResult::Children(r.read_string_vec()?),
                    opcode::GET_DATA => ReadResult::Data {
                        data: r.read_buffer()?,
                        stat: read_stat(r)?,
                    },
                    opcode::ERROR => ReadResult::Error(super::response::code_of(r.read_i32()?)?),
                    op => return Err(JuteError::BadMultiOp(op)),
                });
            }
            SpecialResponse::MultiRead(results)
        }
        Special::Reconfig { .. } => SpecialResponse::Reconfig {
            data: r.read_buffer()?,
            stat: read_stat(r)?,
        },
        Special::Sasl { .. } => SpecialResponse::Sasl {
            token: r.read_buffer()?,
        },
    }))
}
