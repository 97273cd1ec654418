//! Jute's primitives: a bounds-checked [`Reader`] over a byte slice and a
//! [`Writer`] into a `Vec<u8>`.
//!
//! Ints are 4 bytes and longs 8, big-endian; a bool is one byte (any
//! nonzero byte reads as true, as Java's `readBoolean`); strings and
//! buffers are an int length then the bytes, and vectors an int count then
//! the elements, with -1 meaning null. Null reads as empty (ZooKeeper's
//! clients send empty data as -1); other negative lengths and lengths over
//! the reader's maximum are errors. Strings are decoded as Java does, with
//! invalid UTF-8 replaced, never refused.

use bytes::Bytes;

use super::{JuteError, DEFAULT_MAX_BUFFER};

/// Reads jute fields from a byte slice; every read checks bounds first.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    max: usize,
}

impl<'a> Reader<'a> {
    /// A reader that refuses lengths over [`DEFAULT_MAX_BUFFER`].
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader::with_max(buf, DEFAULT_MAX_BUFFER)
    }

    /// A reader that refuses string, buffer and vector lengths over `max`.
    pub fn with_max(buf: &'a [u8], max: usize) -> Reader<'a> {
        Reader { buf, pos: 0, max }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not yet read (consumes nothing).
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JuteError> {
        let left = self.remaining();
        if n > left {
            return Err(JuteError::Truncated { needed: n, left });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], JuteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn read_i32(&mut self) -> Result<i32, JuteError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn read_i64(&mut self) -> Result<i64, JuteError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    pub fn read_bool(&mut self) -> Result<bool, JuteError> {
        Ok(self.array::<1>()?[0] != 0)
    }

    /// A length field: `None` for -1 (null), an error for other negatives
    /// or a length over the maximum.
    fn read_len(&mut self) -> Result<Option<usize>, JuteError> {
        let n = self.read_i32()?;
        if n == -1 {
            return Ok(None);
        }
        let len = usize::try_from(n).map_err(|_| JuteError::BadLength(n))?;
        if len > self.max {
            return Err(JuteError::TooLong { len, max: self.max });
        }
        Ok(Some(len))
    }

    /// A buffer; null is `None`.
    pub fn read_opt_buffer(&mut self) -> Result<Option<Bytes>, JuteError> {
        match self.read_len()? {
            None => Ok(None),
            Some(len) => Ok(Some(Bytes::copy_from_slice(self.take(len)?))),
        }
    }

    /// A buffer; null reads as empty.
    pub fn read_buffer(&mut self) -> Result<Bytes, JuteError> {
        Ok(self.read_opt_buffer()?.unwrap_or_default())
    }

    /// A string; null is `None`.
    pub fn read_opt_string(&mut self) -> Result<Option<String>, JuteError> {
        match self.read_len()? {
            None => Ok(None),
            Some(len) => Ok(Some(String::from_utf8_lossy(self.take(len)?).into_owned())),
        }
    }

    /// A string; null reads as empty.
    pub fn read_string(&mut self) -> Result<String, JuteError> {
        Ok(self.read_opt_string()?.unwrap_or_default())
    }

    /// A vector whose elements `f` reads; null is `None`. Every element
    /// takes at least one byte, so a count over the bytes left is refused
    /// before anything is allocated.
    pub fn read_opt_vec<T>(
        &mut self,
        mut f: impl FnMut(&mut Reader<'a>) -> Result<T, JuteError>,
    ) -> Result<Option<Vec<T>>, JuteError> {
        let Some(count) = self.read_len()? else {
            return Ok(None);
        };
        let left = self.remaining();
        if count > left {
            return Err(JuteError::Truncated {
                needed: count,
                left,
            });
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(f(self)?);
        }
        Ok(Some(out))
    }

    /// A vector; null reads as empty.
    pub fn read_vec<T>(
        &mut self,
        f: impl FnMut(&mut Reader<'a>) -> Result<T, JuteError>,
    ) -> Result<Vec<T>, JuteError> {
        Ok(self.read_opt_vec(f)?.unwrap_or_default())
    }

    /// A vector of strings; null reads as empty.
    pub fn read_string_vec(&mut self) -> Result<Vec<String>, JuteError> {
        self.read_vec(|r| r.read_string())
    }
}

/// Writes jute fields into a `Vec<u8>`. Lengths over `i32::MAX` cannot be
/// written; [`Writer::finish_frame`] refuses any packet that large, so
/// such a length never reaches the wire.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    buf: Vec<u8>,
    framed: bool,
}

impl Writer {
    /// A writer with no length prefix.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// A writer for one framed packet: [`Writer::finish_frame`] fills in the
    /// 4-byte length that comes first.
    pub fn framed() -> Writer {
        Writer {
            buf: vec![0; 4],
            framed: true,
        }
    }

    /// The bytes written so far (with the length placeholder, if framed).
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// The bytes written (with the length placeholder, if framed).
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// The finished packet: the payload's length in the first 4 bytes (a
    /// writer made with [`Writer::new`] gets the prefix added in front).
    pub fn finish_frame(self) -> Result<Vec<u8>, JuteError> {
        if !self.framed {
            return super::frame(&self.buf);
        }
        let mut buf = self.buf;
        let payload = buf.len() - 4;
        let len = i32::try_from(payload).map_err(|_| JuteError::Oversize(payload))?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }

    pub fn write_i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn write_i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    fn write_len(&mut self, len: usize) {
        self.write_i32(i32::try_from(len).unwrap_or(i32::MAX));
    }

    /// A buffer (never null: empty data is length 0).
    pub fn write_buffer(&mut self, v: &[u8]) {
        self.write_len(v.len());
        self.buf.extend_from_slice(v);
    }

    /// A buffer, `None` as -1.
    pub fn write_opt_buffer(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.write_buffer(v),
            None => self.write_i32(-1),
        }
    }

    pub fn write_string(&mut self, v: &str) {
        self.write_buffer(v.as_bytes());
    }

    /// A string, `None` as -1.
    pub fn write_opt_string(&mut self, v: Option<&str>) {
        self.write_opt_buffer(v.map(str::as_bytes));
    }

    /// A vector: its count, then each element as `f` writes it.
    pub fn write_vec<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Writer, &T)) {
        self.write_len(items.len());
        for item in items {
            f(self, item);
        }
    }

    pub fn write_string_vec(&mut self, items: &[String]) {
        self.write_vec(items, |w, s| w.write_string(s));
    }
}
