//! The connect handshake: the first packet each way, with no header.
//!
//! The trailing readOnly byte is optional both ways (ZooKeeper's
//! `ProtocolManager`): old clients omit it, and a server answers with one
//! only if the client sent one. Bytes after it are ignored, as Java does.

use bytes::Bytes;

use super::prim::{Reader, Writer};
use super::JuteError;

/// A client's connect request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// Empty for a new session (a null passwd reads as empty).
    pub passwd: Bytes,
    /// `None` when the client sent no readOnly byte.
    pub read_only: Option<bool>,
}

impl ConnectRequest {
    pub fn read(r: &mut Reader<'_>) -> Result<ConnectRequest, JuteError> {
        Ok(ConnectRequest {
            protocol_version: r.read_i32()?,
            last_zxid_seen: r.read_i64()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer()?,
            read_only: read_trailing_bool(r)?,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.write_i32(self.protocol_version);
        w.write_i64(self.last_zxid_seen);
        w.write_i32(self.timeout_ms);
        w.write_i64(self.session_id);
        w.write_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.write_bool(ro);
        }
    }
}

/// A server's answer to a connect request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    /// The negotiated session timeout; 0 for an expired or unknown session.
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Bytes,
    /// Written only when `Some`: set it to `Some(_)` exactly when the
    /// request carried a readOnly byte.
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    pub fn read(r: &mut Reader<'_>) -> Result<ConnectResponse, JuteError> {
        Ok(ConnectResponse {
            protocol_version: r.read_i32()?,
            timeout_ms: r.read_i32()?,
            session_id: r.read_i64()?,
            passwd: r.read_buffer()?,
            read_only: read_trailing_bool(r)?,
        })
    }

    pub fn write(&self, w: &mut Writer) {
        w.write_i32(self.protocol_version);
        w.write_i32(self.timeout_ms);
        w.write_i64(self.session_id);
        w.write_buffer(&self.passwd);
        if let Some(ro) = self.read_only {
            w.write_bool(ro);
        }
    }
}

/// Decoding from a frame's contents and encoding as a framed packet, for the two
/// handshake packets (they have no header, and are read and written whole).
macro_rules! whole_packet {
    ($t:ty) => {
        impl $t {
            /// Decodes the packet from a frame's contents.
            pub fn decode(payload: &[u8]) -> Result<$t, JuteError> {
                <$t>::read(&mut Reader::new(payload))
            }

            /// The framed packet.
            pub fn encode(&self) -> Result<Vec<u8>, JuteError> {
                let mut w = Writer::framed();
                self.write(&mut w);
                w.finish_frame()
            }
        }
    };
}
whole_packet!(ConnectRequest);
whole_packet!(ConnectResponse);

fn read_trailing_bool(r: &mut Reader<'_>) -> Result<Option<bool>, JuteError> {
    if r.remaining() == 0 {
        Ok(None)
    } else {
        r.read_bool().map(Some)
    }
}
