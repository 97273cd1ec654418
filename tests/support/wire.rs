//! Speaking the wire protocol by hand from tests: a cluster key file, blocking connections
//! that run the handshake as a chosen role (or with a wrong key), and frames in and out.

#![allow(dead_code)]

use bytes::BytesMut;
use mason_common::auth::{connect_blocking, ClusterKey, Role};
use mason_common::codec::{decode_body, encode_into};
use mason_common::msg::Frame;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes a fresh key file in `dir`; returns its path and the key.
pub fn key_in(dir: &Path) -> (PathBuf, ClusterKey) {
    let p = dir.join("cluster.key");
    let k = ClusterKey::write_new(&p).expect("writing a key file");
    (p, k)
}

/// The flags that give a role process the key.
pub fn key_args(p: &Path) -> Vec<String> {
    vec!["--cluster-key-file".into(), p.display().to_string()]
}

/// A plain connection (no handshake yet), with a 2 s read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    c.set_nodelay(true).expect("nodelay");
    c
}

/// A connection past its handshake as `role`; returns it and the acceptor's role.
pub fn connect_as(addr: SocketAddr, key: &ClusterKey, role: &Role) -> (TcpStream, Role) {
    let mut c = raw(addr);
    let peer = connect_blocking(&mut c, key, role)
        .unwrap_or_else(|e| panic!("handshake with {addr} as {role}: {e}"));
    (c, peer)
}

/// A handshake by someone without the key: a hello as `role`, then (whatever the
/// challenge says) a made-up proof. The acceptor must close the connection.
pub fn forged_handshake(addr: SocketAddr, role: &Role) -> TcpStream {
    use mason_common::msg::{Body, Hello, Proof};
    let mut c = raw(addr);
    send(
        &mut c,
        &Frame::new(Body::Hello(Hello {
            version: mason_common::auth::VERSION,
            role: Some(role.clone()),
            nonce: vec![7u8; mason_common::auth::NONCE].into(),
        })),
    );
    let challenge = try_recv(&mut c);
    assert!(
        matches!(challenge.and_then(|f| f.body), Some(Body::Challenge(_))),
        "no challenge from {addr}"
    );
    send(
        &mut c,
        &Frame::new(Body::Proof(Proof {
            mac: vec![0x5a; 32].into(),
        })),
    );
    c
}

/// The frame's bytes on the wire: 4-byte big-endian length, then the prost body.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_into(frame, &mut buf);
    buf.to_vec()
}

pub fn send(c: &mut TcpStream, frame: &Frame) {
    c.write_all(&encode(frame)).expect("sending a frame");
}

/// Reads one whole frame (within the read timeout).
pub fn recv(c: &mut TcpStream) -> Frame {
    try_recv(c).expect("a frame (none within the read timeout?)")
}

/// One frame, or `None` if none came within the read timeout or the connection closed.
pub fn try_recv(c: &mut TcpStream) -> Option<Frame> {
    let mut len = [0u8; 4];
    c.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    assert!(len < 64 << 20, "implausible frame length {len}");
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).ok()?;
    Some(decode_body(body.into()).expect("the frame decodes"))
}

/// Whether the server closed `c` (reads end, or are reset) within `wait`.
pub fn closed_by_server(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // what was queued before the close
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}
