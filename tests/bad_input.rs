//! Bad input on the wire and on the command line.
//!
//! Wire: a frame that does not decode, a length over `--max-frame`, a stream that ends inside
//! a frame, an empty body, or a frame of the wrong kind closes that one connection (with a
//! logged reason); the process lives on and keeps serving well-behaved connections, old and
//! new. Command line: bad values are refused by clap with exit code 2 before anything starts.
//!
//! Everything listens on 127.0.0.1 only.

use mason_common::frame::{decode, encode_into};
use mason_common::msg::{
    Body, ClientOp, ClientReply, Frame, GetSeq, PeerHello, RaftMsg, ReplyStatus, SeqReply,
    SeqStatus,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The process tests of this file run one at a time (the machine may have 2 cores).
static PROCS: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    PROCS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A spawned `mason` process, SIGKILLed (by its own pid) when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(name: &'static str, args: &[String], stderr_to: &Path) -> Proc {
        let err = std::fs::File::create(stderr_to).expect("creating the stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_mason"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting mason {name}: {e}"));
        Proc { child, name }
    }

    fn assert_alive(&mut self, stderr: &Path) {
        if let Some(st) = self.child.try_wait().expect("try_wait") {
            panic!(
                "mason {} exited ({st}); its stderr:\n{}",
                self.name,
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
    }

    /// Waits (at most 20 s) until `addr` accepts connections.
    fn wait_listening(&mut self, addr: SocketAddr, stderr: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            self.assert_alive(stderr);
            assert!(
                Instant::now() < deadline,
                "mason {} not listening on {addr} after 20 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A loopback address that nothing listens on (it was free a moment ago).
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local_addr")
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    c.set_nodelay(true).expect("nodelay");
    c
}

/// The frame's bytes on the wire: 4-byte big-endian length, then the prost body.
fn encode(frame: &Frame) -> Vec<u8> {
    let mut buf = Default::default();
    encode_into(frame, &mut buf);
    buf.to_vec()
}

fn send(c: &mut TcpStream, frame: &Frame) {
    c.write_all(&encode(frame)).expect("sending a frame");
}

/// Reads one whole frame (within the 2 s read timeout).
fn recv(c: &mut TcpStream) -> Frame {
    let mut len = [0u8; 4];
    c.read_exact(&mut len)
        .expect("reading a frame's length (no answer within 2 s?)");
    let len = u32::from_be_bytes(len) as usize;
    assert!(len < 1 << 20, "implausible frame length {len}");
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).expect("reading a frame's body");
    decode(&body).unwrap_or_else(|e| panic!("the server sent an undecodable frame: {e}"))
}

/// The server must close this connection within 2 s (a read returns end of stream or a
/// reset), sending nothing first.
fn assert_closed_by_server(c: &mut TcpStream, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: connection still open after 2 s");
        c.set_read_timeout(Some(left)).expect("read timeout");
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => panic!("{what}: the server answered {n} bytes instead of closing"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("{what}: connection still open after 2 s")
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A reset is a close too.
            Err(_) => return,
        }
    }
}

/// Sends `bytes` on a fresh connection (then, if `close_write`, ends our half) and checks
/// that the server closes the connection.
fn bad_connection(addr: SocketAddr, bytes: &[u8], close_write: bool, what: &str) {
    let mut c = connect(addr);
    c.write_all(bytes).expect("sending bad bytes");
    if close_write {
        c.shutdown(Shutdown::Write).expect("shutdown write");
    }
    assert_closed_by_server(&mut c, what);
}

/// The wire-level bad inputs every server must survive, each on its own connection, with
/// `max_frame` the server's limit. `wrong_kind` is a well-formed frame the server does not
/// take.
fn send_every_bad_frame(addr: SocketAddr, max_frame: usize, wrong_kind: &Frame) {
    // (i) A valid length with a body that does not decode (0xff is an invalid wire type).
    bad_connection(
        addr,
        &[0, 0, 0, 3, 0xff, 0xff, 0xff],
        false,
        "undecodable body",
    );
    // (ii) A length over the limit (its body never needs to arrive).
    let mut over = ((max_frame + 1) as u32).to_be_bytes().to_vec();
    over.extend_from_slice(&[0u8; 16]);
    bad_connection(addr, &over, false, "length over --max-frame");
    // A huge length, near u32::MAX: must not make the server allocate or wait for it.
    bad_connection(addr, &[0xff, 0xff, 0xff, 0xf0], false, "length near 4 GiB");
    // (iii) A truncated frame: a real frame cut short, then our end closes.
    let whole = encode(wrong_kind);
    bad_connection(
        addr,
        &whole[..whole.len() - 2],
        true,
        "truncated frame, then close",
    );
    // Half a length prefix, then close.
    bad_connection(addr, &[0, 0], true, "truncated length prefix, then close");
    // An empty body: a frame with no message.
    bad_connection(addr, &[0, 0, 0, 0], false, "empty frame");
    // A well-formed frame of a kind this server does not take.
    bad_connection(addr, &whole, false, "frame of the wrong kind");
    // A body whose last varint never ends.
    bad_connection(
        addr,
        &[0, 0, 0, 2, 0x08, 0x80],
        false,
        "unterminated varint",
    );
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

fn get_seq(group: u32, batch_id: u64, space_mask: u64, counts: Vec<u32>) -> Frame {
    Frame::new(Body::GetSeq(GetSeq {
        epoch: 1,
        group,
        batch_id,
        space_mask,
        counts,
        committed: 0,
    }))
}

fn seq_reply(c: &mut TcpStream) -> SeqReply {
    match recv(c).body {
        Some(Body::SeqReply(r)) => r,
        other => panic!("expected a SeqReply, got {other:?}"),
    }
}

fn start_sequencer(dir: &Path, max_frame: usize) -> (Proc, SocketAddr, std::path::PathBuf) {
    let addr = free_addr();
    let log = dir.join("sequencer.stderr");
    let mut p = Proc::start(
        "sequencer",
        &[
            s("sequencer"),
            s("--listen"),
            s(addr),
            s("--spaces"),
            s(2),
            s("--max-frame"),
            s(max_frame),
        ],
        &log,
    );
    p.wait_listening(addr, &log);
    (p, addr, log)
}

#[test]
fn sequencer_survives_bad_frames() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut seq, addr, log) = start_sequencer(dir.path(), 1024);

    // A well-behaved connection, before anything bad happens.
    let mut good = connect(addr);
    send(&mut good, &get_seq(0, 1, 0b11, vec![3, 4]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Ok as i32, "{r:?}");
    assert_eq!(
        (r.group, r.batch_id, r.repeat, r.space_mask, r.epoch),
        (0, 1, false, 0b11, 1),
        "{r:?}"
    );
    assert_eq!(
        (r.bases.clone(), r.counts.clone()),
        (vec![0, 0], vec![3, 4])
    );
    // A malformed request is answered Invalid and leaves the connection open.
    send(&mut good, &get_seq(0, 2, 0b100, vec![1]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Invalid as i32, "space 2 of 2: {r:?}");
    send(&mut good, &get_seq(0, 2, 0b11, vec![1]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Invalid as i32, "counts vs mask: {r:?}");

    let wrong_kind = Frame::new(Body::ClientOp(ClientOp {
        client_id: 1,
        client_seq: 1,
        group: 0,
        space_mask: 1,
        payload: Default::default(),
        acked_below: 0,
    }));
    send_every_bad_frame(addr, 1024, &wrong_kind);
    // A frame exactly at the limit is accepted (it is the body length that is limited):
    // a GetSeq whose counts fill 1024 bytes is answered, here Invalid (mask vs counts).
    let mut at_limit = connect(addr);
    let big = get_seq(0, 9, 0b1, vec![1; 500]);
    let n = encode(&big).len() - 4;
    assert!(n <= 1024, "test frame of {n} bytes");
    send(&mut at_limit, &big);
    let r = seq_reply(&mut at_limit);
    assert_eq!(r.status, SeqStatus::Invalid as i32, "{r:?}");

    // The good connection still works, and the sequencer's state is intact.
    send(&mut good, &get_seq(0, 2, 0b01, vec![5]));
    let r = seq_reply(&mut good);
    assert_eq!(r.status, SeqStatus::Ok as i32, "{r:?}");
    assert_eq!((r.bases.clone(), r.counts.clone()), (vec![3], vec![5]));
    send(&mut good, &get_seq(0, 1, 0b11, vec![0, 0]));
    let r = seq_reply(&mut good);
    assert!(
        r.repeat && r.bases == [0, 0] && r.counts == [3, 4],
        "repeat of batch 1: {r:?}"
    );
    // So does a new connection.
    let mut fresh = connect(addr);
    send(&mut fresh, &get_seq(1, 1, 0b11, vec![1, 1]));
    let r = seq_reply(&mut fresh);
    assert_eq!(r.status, SeqStatus::Ok as i32, "{r:?}");
    assert_eq!(
        (r.bases.clone(), r.counts.clone()),
        (vec![8, 4], vec![1, 1])
    );

    seq.assert_alive(&log);
    let text = std::fs::read_to_string(&log).expect("sequencer stderr");
    // undecodable, two oversized lengths, two truncations, empty body, unterminated varint.
    assert!(
        count(&text, "malformed frame") >= 7,
        "expected a 'malformed frame' line per bad connection; stderr:\n{text}"
    );
    assert!(
        text.contains("not a sequencer message"),
        "no log line for the wrong-kind frame; stderr:\n{text}"
    );
}

fn client_op(client_id: u64, group: u32, space_mask: u64) -> Frame {
    Frame::new(Body::ClientOp(ClientOp {
        client_id,
        client_seq: 1,
        group,
        space_mask,
        payload: Default::default(),
        acked_below: 1,
    }))
}

fn client_reply(c: &mut TcpStream) -> ClientReply {
    match recv(c).body {
        Some(Body::ClientReply(r)) => r,
        other => panic!("expected a ClientReply, got {other:?}"),
    }
}

/// Starts replica 0 of `groups` groups whose other two replicas never start (their
/// addresses are free ports), with `--max-frame 1024`; returns it, its address and the
/// file its stderr goes to.
fn start_lone_proxy(
    dir: &Path,
    seq_addr: SocketAddr,
    groups: u32,
    extra: &[&str],
) -> (Proc, SocketAddr, std::path::PathBuf) {
    let peers = [free_addr(), free_addr(), free_addr()];
    let addr = peers[0];
    let log = dir.join("proxy.stderr");
    let mut args = vec![
        s("proxy"),
        s("--replica"),
        s(0),
        s("--peers"),
        peers
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        s("--groups"),
        s(groups),
        s("--sequencers"),
        s(seq_addr),
        s("--data-dir"),
        dir.join("data").display().to_string(),
        s("--fsync"),
        s("off"),
        s("--max-frame"),
        s(1024),
    ];
    args.extend(extra.iter().map(s));
    let mut proxy = Proc::start("proxy", &args, &log);
    proxy.wait_listening(addr, &log);
    (proxy, addr, log)
}

#[test]
fn proxy_survives_bad_frames() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_seq, seq_addr, _) = start_sequencer(dir.path(), 1024);
    // Replica 0 of groups whose other two replicas never start: it cannot win an election,
    // so it answers every op for a hosted group, NotLeader.
    let (mut proxy, addr, log) = start_lone_proxy(dir.path(), seq_addr, 2, &["--spaces", "2"]);

    let mut good = connect(addr);
    send(&mut good, &client_op(7, 0, 0b01));
    let r = client_reply(&mut good);
    assert_eq!((r.client_id, r.client_seq), (7, 1), "{r:?}");
    assert_eq!(r.status, ReplyStatus::NotLeader as i32, "{r:?}");
    // Malformed ops are answered Invalid: a group not hosted here, no space, a space out
    // of range.
    for (group, mask, why) in [
        (9, 0b01, "unknown group"),
        (0, 0, "no space"),
        (1, 0b100, "space 2 of 2"),
    ] {
        send(&mut good, &client_op(8, group, mask));
        let r = client_reply(&mut good);
        assert_eq!(r.status, ReplyStatus::Invalid as i32, "{why}: {r:?}");
        assert_eq!((r.client_id, r.client_seq), (8, 1), "{why}: {r:?}");
    }

    let wrong_kind = Frame::new(Body::SeqReply(SeqReply {
        epoch: 1,
        group: 0,
        batch_id: 1,
        status: 0,
        repeat: false,
        space_mask: 1,
        bases: vec![0],
        counts: vec![1],
        watermarks: Vec::new(),
    }));
    send_every_bad_frame(addr, 1024, &wrong_kind);
    // Raft frames are taken only from a connection that introduced itself as a peer: from
    // any other, the connection is closed.
    let mut stranger = connect(addr);
    send(
        &mut stranger,
        &Frame::new(Body::Raft(RaftMsg {
            group: 0,
            data: vec![0xffu8; 8].into(),
        })),
    );
    assert_closed_by_server(&mut stranger, "raft frame from a non-peer");
    // A peer's Raft frame whose raft-rs bytes are garbage is dropped with a warning, and
    // the connection stays open.
    let mut raft = connect(addr);
    send(
        &mut raft,
        &Frame::new(Body::PeerHello(PeerHello { replica: 1 })),
    );
    send(
        &mut raft,
        &Frame::new(Body::Raft(RaftMsg {
            group: 0,
            data: vec![0xffu8; 8].into(),
        })),
    );
    // And one for a group not hosted here.
    send(
        &mut raft,
        &Frame::new(Body::Raft(RaftMsg {
            group: 77,
            data: Default::default(),
        })),
    );
    send(&mut raft, &client_op(9, 1, 0b11));
    let r = client_reply(&mut raft);
    assert_eq!((r.client_id, r.status), (9, ReplyStatus::NotLeader as i32));

    // The first connection still gets answers, for both groups.
    for g in 0..2 {
        send(&mut good, &client_op(10 + u64::from(g), g, 0b10));
        let r = client_reply(&mut good);
        assert_eq!((r.client_id, r.client_seq), (10 + u64::from(g), 1), "{r:?}");
        assert_eq!(r.status, ReplyStatus::NotLeader as i32, "{r:?}");
    }
    // So does a new one.
    let mut fresh = connect(addr);
    send(&mut fresh, &client_op(12, 0, 0b11));
    let r = client_reply(&mut fresh);
    assert_eq!(r.client_id, 12, "{r:?}");

    proxy.assert_alive(&log);
    let text = std::fs::read_to_string(&log).expect("proxy stderr");
    assert!(
        count(&text, "malformed frame") >= 7,
        "expected a 'malformed frame' line per bad connection; stderr:\n{text}"
    );
    assert!(
        text.contains("unexpected frame for a proxy"),
        "no log line for the wrong-kind frame; stderr:\n{text}"
    );
    assert!(
        text.contains("undecodable raft message"),
        "no log line for the garbage raft message; stderr:\n{text}"
    );
    assert!(
        text.contains("not a peer's"),
        "no log line for the non-peer raft frame; stderr:\n{text}"
    );
}

/// `mason <args>` must exit 2 at once, with an error on stderr that names `flag` (on its
/// first line when `one_line`), and without creating its results directory.
fn refused(args: &[&str], flag: &str, one_line: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(args)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .expect("running mason");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(2),
        "mason {args:?}: exit {:?}, stderr:\n{stderr}",
        o.status
    );
    assert!(
        took < Duration::from_secs(5),
        "mason {args:?} took {took:?} to refuse"
    );
    let first = stderr.lines().next().unwrap_or("");
    let named = if one_line {
        first.contains(flag)
    } else {
        stderr.contains(flag)
    };
    assert!(
        first.starts_with("error") && named,
        "mason {args:?}: first stderr line '{first}' is not an error naming {flag}\n{stderr}"
    );
    assert!(o.stdout.is_empty(), "mason {args:?} printed to stdout");
    assert!(
        !out.exists(),
        "mason {args:?} created its results directory: it started running"
    );
}

#[test]
fn bad_flags_are_refused() {
    refused(&["local", "--spaces", "0"], "--spaces", true);
    refused(&["local", "--spaces", "65"], "--spaces", true);
    refused(&["local", "--system", "bogus"], "--system", true);
    refused(&["local", "--duration", "0"], "--duration", true);
    refused(&["local", "--groups", "0"], "--groups", true);
    // A few more of the same kind.
    refused(&["local", "--duration=-1"], "--duration", true);
    refused(&["local", "--duration", "nan"], "--duration", true);
    refused(&["local", "--warmup=-0.5"], "--warmup", true);
    refused(&["local", "--op-spaces", "0"], "--op-spaces", true);
    refused(&["local", "--clients", "0"], "--clients", true);
    refused(&["local", "--fsync", "maybe"], "--fsync", true);
    // A restart with no kill: clap names the missing flag on the next line.
    refused(
        &["local", "--restart-follower", "2"],
        "--kill-follower",
        false,
    );
}

/// Protobuf wire encoding of a varint field and of a length-delimited field, to build a
/// raft-rs `eraftpb::Message` by hand (the tests do not depend on raft-rs).
fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn pb_field(out: &mut Vec<u8>, field: u64, v: u64) {
    pb_varint(out, field << 3);
    pb_varint(out, v);
}

/// A well-formed raft-rs heartbeat claiming a commit index far beyond the replica's log
/// (raft-rs aborts on that): from a non-peer connection it is refused outright; from a
/// peer it is clamped. Either way the group keeps answering and nothing panics.
#[test]
fn proxy_survives_forged_raft_message() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("tempdir");
    let (_seq, seq_addr, _) = start_sequencer(dir.path(), 1024);
    let (mut proxy, addr, log) = start_lone_proxy(dir.path(), seq_addr, 1, &[]);
    // eraftpb::Message { msg_type: MsgHeartbeat (8), to: 1, from: 2, term: 100, commit: 1000 }
    let mut m = Vec::new();
    pb_field(&mut m, 1, 8);
    pb_field(&mut m, 2, 1);
    pb_field(&mut m, 3, 2);
    pb_field(&mut m, 4, 100);
    pb_field(&mut m, 8, 1000);
    let forged = Frame::new(Body::Raft(RaftMsg {
        group: 0,
        data: m.into(),
    }));
    let mut forger = connect(addr);
    send(&mut forger, &forged);
    assert_closed_by_server(&mut forger, "raft frame from a non-peer");
    let mut peer = connect(addr);
    send(
        &mut peer,
        &Frame::new(Body::PeerHello(PeerHello { replica: 1 })),
    );
    send(&mut peer, &forged);
    std::thread::sleep(Duration::from_millis(300));
    let mut c = connect(addr);
    send(&mut c, &client_op(7, 0, 0b1));
    let mut len = [0u8; 4];
    let answered = c.read_exact(&mut len).is_ok();
    proxy.assert_alive(&log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        answered && !text.contains("panicked"),
        "group 0 stopped answering after a forged Raft frame; proxy stderr:\n{}",
        text.lines().take(6).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn local_refuses_a_results_dir_that_holds_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data").join("r0")).expect("mkdir");
    let started = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args(["local", "--out"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run mason");
    assert_eq!(o.status.code(), Some(2));
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already holds a run"), "stderr: {err}");
    assert!(!dir.path().join("logs").exists(), "nothing was started");
}
