//! A [`View`]'s binary form, in jute's primitives (big-endian ints, length-prefixed strings
//! and buffers, counted vectors).
//!
//! Layout: int format version (1); long shard; vector of records, each a string path, a
//! bool (present), and if present the data buffer, the ACL vector, the nine persisted Stat
//! fields (czxid, mzxid, ctime, mtime, version, cversion, aversion, ephemeralOwner, pzxid)
//! and the child names as a string vector; the ephemeral paths as a string vector; long
//! descendants. Decoding checks every length against the bytes left (so what it allocates
//! is bounded by the input's length), refuses trailing bytes, and never panics.

use thiserror::Error;

use super::{NodeImage, View};
use crate::jute::{read_acl_vec, write_acl_vec, JuteError, Reader, Writer};
use crate::types::StatPersisted;

const FORMAT: i32 = 1;

/// Why bytes are not a view.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ViewError {
    #[error("malformed view: {0}")]
    Malformed(#[from] JuteError),
    #[error("unsupported view format {0}")]
    UnsupportedFormat(i32),
    #[error("invalid view: {0}")]
    Invalid(&'static str),
    #[error("view has {0} bytes after its end")]
    TrailingBytes(usize),
}

impl View {
    /// The view's binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.write_i32(FORMAT);
        w.write_i64(i64::from(self.shard));
        w.write_vec(&self.records, |w, (path, record)| {
            w.write_string(path);
            w.write_bool(record.is_some());
            if let Some(image) = record {
                write_image(w, image);
            }
        });
        w.write_string_vec(&self.ephemerals);
        w.write_i64(i64::try_from(self.descendants).unwrap_or(i64::MAX));
        w.into_inner()
    }

    /// A view from [`View::encode`]'s output.
    pub fn decode(buf: &[u8]) -> Result<View, ViewError> {
        let mut r = Reader::with_max(buf, buf.len());
        let format = r.read_i32()?;
        if format != FORMAT {
            return Err(ViewError::UnsupportedFormat(format));
        }
        let shard = u32::try_from(r.read_i64()?).map_err(|_| ViewError::Invalid("shard"))?;
        let records = r.read_vec(|r| {
            let path = r.read_string()?;
            let record = if r.read_bool()? {
                Some(read_image(r)?)
            } else {
                None
            };
            Ok((path, record))
        })?;
        let ephemerals = r.read_string_vec()?;
        let descendants =
            u64::try_from(r.read_i64()?).map_err(|_| ViewError::Invalid("descendants"))?;
        if r.remaining() != 0 {
            return Err(ViewError::TrailingBytes(r.remaining()));
        }
        Ok(View {
            shard,
            records,
            ephemerals,
            descendants,
        })
    }
}

fn write_image(w: &mut Writer, image: &NodeImage) {
    w.write_buffer(&image.data);
    write_acl_vec(w, &image.acl);
    let s = &image.stat;
    w.write_i64(s.czxid);
    w.write_i64(s.mzxid);
    w.write_i64(s.ctime);
    w.write_i64(s.mtime);
    w.write_i32(s.version);
    w.write_i32(s.cversion);
    w.write_i32(s.aversion);
    w.write_i64(s.ephemeral_owner);
    w.write_i64(s.pzxid);
    let children: Vec<&String> = image.children.iter().collect();
    w.write_vec(&children, |w, name| w.write_string(name));
}

fn read_image(r: &mut Reader<'_>) -> Result<NodeImage, JuteError> {
    let data = r.read_buffer()?;
    let acl = read_acl_vec(r)?;
    let stat = StatPersisted {
        czxid: r.read_i64()?,
        mzxid: r.read_i64()?,
        ctime: r.read_i64()?,
        mtime: r.read_i64()?,
        version: r.read_i32()?,
        cversion: r.read_i32()?,
        aversion: r.read_i32()?,
        ephemeral_owner: r.read_i64()?,
        pzxid: r.read_i64()?,
    };
    let children = r.read_string_vec()?.into_iter().collect();
    Ok(NodeImage {
        data,
        acl,
        stat,
        children,
    })
}
