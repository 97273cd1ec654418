//! Who is on the other end of a connection: the cluster secret, the roles, and the
//! challenge-response handshake every connection starts with.
//!
//! Every process of a run holds the same 32-byte cluster key (`--cluster-key-file`, made
//! fresh per run by `mason local` and `mason experiment run`). A connection starts with:
//!
//! ```text
//! connector -> acceptor  Hello     { version, role of the connector, nonce_c }
//! acceptor  -> connector Challenge { role of the acceptor, nonce_s, mac_s }
//! connector -> acceptor  Proof     { mac_c }
//! ```
//!
//! where `mac_x = HMAC-SHA256(key, label_x | nonce_c | nonce_s | role_c | role_s)` (each
//! part length-prefixed; the labels differ per side). Fresh 32-byte nonces from both sides
//! make a recorded handshake useless on another connection; each side learns that the
//! other holds the key and which role it claims. The acceptor checks the proof before it
//! reads anything else, and the connector checks the challenge before it proves itself.
//!
//! This authenticates the start of a connection, not each frame after it: someone who can
//! inject into an established TCP stream is beyond it (use a private network or a tunnel).
//! `--insecure` runs use a well-known all-zero key: they talk only to each other.

use crate::codec::{CodecError, FrameCodec};
use crate::msg::{Body, Challenge, Frame, Hello, Proof};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use std::io;
use std::path::Path;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite};

/// The handshake's version; a peer speaking another is refused.
pub const VERSION: u32 = 1;
/// Bytes of each side's nonce.
pub const NONCE: usize = 32;
/// The largest frame accepted before the handshake completes.
pub const HANDSHAKE_MAX_FRAME: usize = 512;

type HmacSha256 = Hmac<Sha256>;

/// What a process is, as its connections say at their start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum RoleKind {
    Unknown = 0,
    /// A client of the sequencing service or the shared log (ops, appends, reads).
    Client = 1,
    /// A reader of what groups bind (`Watch`), with no say in anything.
    Watcher = 2,
    /// Replica `replica` of the groups of proxy triple `triple`.
    Proxy = 3,
    /// Sequencer `index` (0 is the first primary).
    Sequencer = 4,
    /// Member `index` of shard `shard`'s chain of log servers.
    LogServer = 5,
    /// Server `index` of ZK-Mason shard `shard`.
    ZkServer = 6,
}

/// A connection's role, as its handshake established it.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Role {
    #[prost(enumeration = "RoleKind", tag = "1")]
    pub kind: i32,
    #[prost(uint32, tag = "2")]
    pub replica: u32,
    #[prost(uint32, tag = "3")]
    pub triple: u32,
    #[prost(uint32, tag = "4")]
    pub index: u32,
    #[prost(uint32, tag = "5")]
    pub shard: u32,
    /// Clients: the most ops this client has in flight at once (its window).
    #[prost(uint32, tag = "6")]
    pub window: u32,
}

impl Role {
    pub fn client(window: u32) -> Role {
        Role {
            kind: RoleKind::Client as i32,
            window,
            ..Role::default()
        }
    }
    pub fn watcher() -> Role {
        Role {
            kind: RoleKind::Watcher as i32,
            ..Role::default()
        }
    }
    pub fn proxy(replica: u32, triple: u32) -> Role {
        Role {
            kind: RoleKind::Proxy as i32,
            replica,
            triple,
            ..Role::default()
        }
    }
    pub fn sequencer(index: u32) -> Role {
        Role {
            kind: RoleKind::Sequencer as i32,
            index,
            ..Role::default()
        }
    }
    pub fn log_server(shard: u32, index: u32) -> Role {
        Role {
            kind: RoleKind::LogServer as i32,
            shard,
            index,
            ..Role::default()
        }
    }
    pub fn zk_server(shard: u32, index: u32) -> Role {
        Role {
            kind: RoleKind::ZkServer as i32,
            shard,
            index,
            ..Role::default()
        }
    }
    pub fn role_kind(&self) -> RoleKind {
        RoleKind::try_from(self.kind).unwrap_or(RoleKind::Unknown)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.role_kind() {
            RoleKind::Unknown => write!(f, "unknown role {}", self.kind),
            RoleKind::Client => write!(f, "client"),
            RoleKind::Watcher => write!(f, "watcher"),
            RoleKind::Proxy => write!(
                f,
                "proxy replica {} of triple {}",
                self.replica, self.triple
            ),
            RoleKind::Sequencer => write!(f, "sequencer {}", self.index),
            RoleKind::LogServer => write!(f, "log server {}/{}", self.shard, self.index),
            RoleKind::ZkServer => write!(f, "zk server {}/{}", self.shard, self.index),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cluster key file {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("cluster key file {path} is readable or writable by group or others (mode {mode:o}): run chmod 600 on it")]
    Open { path: String, mode: u32 },
    #[error("cluster key file {path} belongs to uid {owner}, not to this user (uid {me})")]
    Owner { path: String, owner: u32, me: u32 },
    #[error(
        "cluster key file {path}, line 1: expected 64 hex digits (a 32-byte key), found {found}"
    )]
    Format { path: String, found: String },
}

/// The cluster secret.
#[derive(Clone)]
pub struct ClusterKey {
    key: [u8; 32],
    insecure: bool,
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.insecure {
            f.write_str("ClusterKey(insecure)")
        } else {
            f.write_str("ClusterKey(..)")
        }
    }
}

impl ClusterKey {
    /// A fresh random key.
    pub fn generate() -> ClusterKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        ClusterKey {
            key,
            insecure: false,
        }
    }

    /// The well-known key of `--insecure` runs: it authenticates nothing.
    pub fn insecure() -> ClusterKey {
        ClusterKey {
            key: [0u8; 32],
            insecure: true,
        }
    }

    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    pub fn from_bytes(key: [u8; 32]) -> ClusterKey {
        ClusterKey {
            key,
            insecure: false,
        }
    }

    pub fn to_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads a key file: 64 hex digits, owned by this user, not open to group or others.
    pub fn from_file(path: &Path) -> Result<ClusterKey, KeyError> {
        use std::os::unix::fs::MetadataExt;
        let p = path.display().to_string();
        let io_err = |source| KeyError::Io {
            path: p.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io_err)?;
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Open { path: p, mode });
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me {
            return Err(KeyError::Owner {
                path: p,
                owner: meta.uid(),
                me,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io_err)?;
        let hex = text.lines().next().unwrap_or("").trim();
        let mut key = [0u8; 32];
        let ok = hex.len() == 64
            && hex.is_ascii()
            && key.iter_mut().enumerate().all(|(i, b)| {
                match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
                    Ok(v) => {
                        *b = v;
                        true
                    }
                    Err(_) => false,
                }
            });
        if !ok {
            let found = if hex.is_empty() {
                "an empty line".to_string()
            } else {
                format!("{} characters", hex.chars().count())
            };
            return Err(KeyError::Format { path: p, found });
        }
        Ok(ClusterKey {
            key,
            insecure: false,
        })
    }

    /// Writes a fresh key to a new file readable only by its owner.
    pub fn write_new(path: &Path) -> io::Result<ClusterKey> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key = ClusterKey::generate();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        writeln!(f, "{}", key.to_hex())?;
        f.sync_all()?;
        Ok(key)
    }

    /// The password of ZooKeeper session `session` (the 16 bytes a client brings back
    /// on reconnect): a MAC of the session id under the cluster key, so that any front
    /// end of the cluster can check it and nobody without the key can forge it.
    pub fn session_password(&self, session: i64) -> [u8; 16] {
        let mut m = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        m.update(b"mason zookeeper session password");
        m.update(&session.to_be_bytes());
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// Whether `passwd` is session `session`'s password (in time that does not depend
    /// on where they differ).
    pub fn check_session_password(&self, session: i64, passwd: &[u8]) -> bool {
        let want = self.session_password(session);
        passwd.len() == want.len()
            && want.iter().zip(passwd).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }

    fn mac(&self, label: &[u8], t: &Transcript) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut m = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts any key length"),
        };
        for part in [
            label,
            &t.nonce_c[..],
            &t.nonce_s[..],
            &t.role_c[..],
            &t.role_s[..],
        ] {
            m.update(&(part.len() as u32).to_be_bytes());
            m.update(part);
        }
        m
    }

    fn sign(&self, label: &[u8], t: &Transcript) -> Bytes {
        Bytes::from(self.mac(label, t).finalize().into_bytes().to_vec())
    }

    /// Constant-time check of `tag`.
    fn check(&self, label: &[u8], t: &Transcript, tag: &[u8]) -> bool {
        self.mac(label, t).verify_slice(tag).is_ok()
    }
}

const SERVER: &[u8] = b"mason-v1 acceptor";
const CLIENT: &[u8] = b"mason-v1 connector";

struct Transcript {
    nonce_c: Bytes,
    nonce_s: Bytes,
    role_c: Vec<u8>,
    role_s: Vec<u8>,
}

impl Transcript {
    fn new(nonce_c: &Bytes, nonce_s: &Bytes, role_c: &Role, role_s: &Role) -> Transcript {
        use prost::Message;
        Transcript {
            nonce_c: nonce_c.clone(),
            nonce_s: nonce_s.clone(),
            role_c: role_c.encode_to_vec(),
            role_s: role_s.encode_to_vec(),
        }
    }
}

fn nonce() -> Bytes {
    let mut n = vec![0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut n);
    Bytes::from(n)
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Codec(#[from] CodecError),
    #[error("the peer closed the connection during the handshake")]
    Closed,
    /// Closed before sending a byte: a probe whether the port is open (as the launchers
    /// make while a role starts), not worth a warning.
    #[error("the peer closed the connection without a word")]
    Silent,
    #[error("expected {0} during the handshake")]
    Unexpected(&'static str),
    #[error("the peer speaks handshake version {0}, this process {VERSION}")]
    Version(u32),
    #[error("the peer's nonce is {0} bytes, not {NONCE}")]
    Nonce(usize),
    #[error("the peer did not prove it holds the cluster key (a wrong or missing --cluster-key-file, or --insecure on one side only)")]
    BadKey,
    #[error("the handshake did not finish in time")]
    Timeout,
}

async fn next<R: AsyncRead + Unpin>(
    rd: &mut FramedRead<R, FrameCodec>,
) -> Result<Body, HandshakeError> {
    match rd.next().await {
        None => Err(HandshakeError::Closed),
        Some(Err(e)) => Err(e.into()),
        Some(Ok(Frame { body: Some(b) })) => Ok(b),
        Some(Ok(Frame { body: None })) => Err(CodecError::Empty.into()),
    }
}

async fn send<W: AsyncWrite + Unpin>(
    wr: &mut FramedWrite<W, FrameCodec>,
    body: Body,
) -> Result<(), HandshakeError> {
    wr.send(&Frame::new(body)).await?;
    Ok(())
}

/// The acceptor's side: returns the connector's role once it proved it holds the key.
/// The caller decides whether that role may use this port.
pub async fn accept<R, W>(
    rd: &mut FramedRead<R, FrameCodec>,
    wr: &mut FramedWrite<W, FrameCodec>,
    key: &ClusterKey,
    me: &Role,
) -> Result<Role, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let first = match next(rd).await {
        Err(HandshakeError::Closed) if rd.read_buffer().is_empty() => {
            return Err(HandshakeError::Silent)
        }
        r => r?,
    };
    let Body::Hello(h) = first else {
        return Err(HandshakeError::Unexpected("a hello"));
    };
    if h.version != VERSION {
        return Err(HandshakeError::Version(h.version));
    }
    if h.nonce.len() != NONCE {
        return Err(HandshakeError::Nonce(h.nonce.len()));
    }
    let role_c = h.role.unwrap_or_default();
    let nonce_s = nonce();
    let t = Transcript::new(&h.nonce, &nonce_s, &role_c, me);
    let challenge = Challenge {
        role: Some(me.clone()),
        nonce: nonce_s,
        mac: key.sign(SERVER, &t),
    };
    send(wr, Body::Challenge(challenge)).await?;
    let Body::Proof(p) = next(rd).await? else {
        return Err(HandshakeError::Unexpected("a proof"));
    };
    if !key.check(CLIENT, &t, &p.mac) {
        return Err(HandshakeError::BadKey);
    }
    Ok(role_c)
}

/// The connector's side: returns the acceptor's role once it proved it holds the key
/// (and this side has proved it too).
pub async fn connect<R, W>(
    rd: &mut FramedRead<R, FrameCodec>,
    wr: &mut FramedWrite<W, FrameCodec>,
    key: &ClusterKey,
    me: &Role,
) -> Result<Role, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce_c = nonce();
    let hello = Hello {
        version: VERSION,
        role: Some(me.clone()),
        nonce: nonce_c.clone(),
    };
    send(wr, Body::Hello(hello)).await?;
    let Body::Challenge(c) = next(rd).await? else {
        return Err(HandshakeError::Unexpected("a challenge"));
    };
    if c.nonce.len() != NONCE {
        return Err(HandshakeError::Nonce(c.nonce.len()));
    }
    let role_s = c.role.unwrap_or_default();
    let t = Transcript::new(&nonce_c, &c.nonce, me, &role_s);
    if !key.check(SERVER, &t, &c.mac) {
        return Err(HandshakeError::BadKey);
    }
    send(
        wr,
        Body::Proof(Proof {
            mac: key.sign(CLIENT, &t),
        }),
    )
    .await?;
    Ok(role_s)
}

/// The connector's side over a blocking socket (tools and tests that speak the protocol
/// by hand): returns the acceptor's role.
pub fn connect_blocking(
    s: &mut std::net::TcpStream,
    key: &ClusterKey,
    me: &Role,
) -> io::Result<Role> {
    use prost::Message;
    use std::io::{Read, Write};
    let write = |s: &mut std::net::TcpStream, body: Body| -> io::Result<()> {
        let mut buf = bytes::BytesMut::new();
        crate::codec::encode_into(&Frame::new(body), &mut buf);
        s.write_all(&buf)
    };
    let nonce_c = nonce();
    write(
        s,
        Body::Hello(Hello {
            version: VERSION,
            role: Some(me.clone()),
            nonce: nonce_c.clone(),
        }),
    )?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > HANDSHAKE_MAX_FRAME {
        return Err(io::Error::other("oversized challenge"));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let Ok(Frame {
        body: Some(Body::Challenge(c)),
    }) = Frame::decode(&body[..])
    else {
        return Err(io::Error::other("expected a challenge"));
    };
    let role_s = c.role.unwrap_or_default();
    let t = Transcript::new(&nonce_c, &c.nonce, me, &role_s);
    if !key.check(SERVER, &t, &c.mac) {
        return Err(io::Error::other(HandshakeError::BadKey.to_string()));
    }
    write(
        s,
        Body::Proof(Proof {
            mac: key.sign(CLIENT, &t),
        }),
    )?;
    Ok(role_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(
        ka: ClusterKey,
        kc: ClusterKey,
    ) -> (Result<Role, HandshakeError>, Result<Role, HandshakeError>) {
        let (a, c) = tokio::io::duplex(4096);
        let (ar, aw) = tokio::io::split(a);
        let (cr, cw) = tokio::io::split(c);
        let acc = tokio::spawn(async move {
            let mut rd = FramedRead::new(ar, FrameCodec::new(HANDSHAKE_MAX_FRAME));
            let mut wr = FramedWrite::new(aw, FrameCodec::new(HANDSHAKE_MAX_FRAME));
            accept(&mut rd, &mut wr, &ka, &Role::sequencer(1)).await
        });
        let mut rd = FramedRead::new(cr, FrameCodec::new(HANDSHAKE_MAX_FRAME));
        let mut wr = FramedWrite::new(cw, FrameCodec::new(HANDSHAKE_MAX_FRAME));
        let con = connect(&mut rd, &mut wr, &kc, &Role::proxy(2, 0)).await;
        drop((rd, wr));
        (acc.await.unwrap(), con)
    }

    #[tokio::test]
    async fn both_sides_learn_each_others_role() {
        let k = ClusterKey::generate();
        let (a, c) = pair(k.clone(), k).await;
        assert_eq!(a.unwrap(), Role::proxy(2, 0));
        assert_eq!(c.unwrap(), Role::sequencer(1));
    }

    #[tokio::test]
    async fn a_wrong_or_missing_key_is_refused_by_both_sides() {
        let (a, c) = pair(ClusterKey::generate(), ClusterKey::generate()).await;
        assert!(matches!(c, Err(HandshakeError::BadKey)), "{c:?}");
        assert!(a.is_err());
        let (a, c) = pair(ClusterKey::generate(), ClusterKey::insecure()).await;
        assert!(matches!(c, Err(HandshakeError::BadKey)));
        assert!(a.is_err());
        let (a, c) = pair(ClusterKey::insecure(), ClusterKey::insecure()).await;
        assert!(a.is_ok() && c.is_ok());
    }

    #[test]
    fn key_files_must_be_private_and_well_formed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("mason-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k");
        let _ = std::fs::remove_file(&p);
        let k = ClusterKey::write_new(&p).unwrap();
        assert_eq!(ClusterKey::from_file(&p).unwrap().to_hex(), k.to_hex());
        assert!(ClusterKey::write_new(&p).is_err(), "never overwrites");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClusterKey::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&p, "abc\n").unwrap();
        let e = ClusterKey::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("3 characters"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
