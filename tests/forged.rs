//! Peers must prove who they are: against a running cluster (CorfuMason: a primary and a
//! backup sequencer, 3 proxy processes, 4 log servers), someone without the cluster key
//! sends each message that once let a stranger steer it:
//! - a `Takeover` to the backup (it forced an epoch change), and a forged `Promise` and
//!   `FillAck` (they completed or activated a takeover);
//! - a `GetSeq` at epoch 0 for a group's next batch id (it took the group's batch id);
//! - Raft messages from a self-declared peer with a higher term (they could commit
//!   arbitrary batches);
//! - log writes as the chain's "upstream" (they overwrote entries).
//!
//! Each is sent with no handshake at all, and after a handshake with a made-up proof: the
//! server closes the connection without answering, and nothing changes. The verdict stays
//! ok, no takeover starts, the epoch does not move, no Raft term jumps, and the log holds
//! what was bound.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/wire.rs"]
mod wire;

use cluster::{listen_addr, one_at_a_time, run_local_with, small, OutDir};
use mason_common::auth::Role;
use mason_common::logmsg::{LogItem, LogWrite};
use mason_common::msg::{
    Body, FillAck, Frame, GetSeq, Promise, RaftMsg, Ranges, SeqHello, Takeover,
};
use mason_common::record::{read_records, BoundBatch};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Protobuf wire encoding of a varint field, to build a raft-rs message by hand.
fn pb_field(out: &mut Vec<u8>, field: u64, v: u64) {
    for mut x in [field << 3, v] {
        loop {
            let b = (x & 0x7f) as u8;
            x >>= 7;
            if x == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
}

/// eraftpb::Message { msg_type: MsgHeartbeat (8), to: 1, from: 2, term: 100, commit: 1000 }
fn forged_heartbeat(group: u32) -> Frame {
    let mut m = Vec::new();
    pb_field(&mut m, 1, 8);
    pb_field(&mut m, 2, 1);
    pb_field(&mut m, 3, 2);
    pb_field(&mut m, 4, 100);
    pb_field(&mut m, 8, 1000);
    Frame::new(Body::Raft(RaftMsg {
        group,
        data: m.into(),
    }))
}

/// Whether the server closed `c` without sending it a single frame.
fn closed_unanswered(mut c: TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(3))).ok();
    wire::try_recv(&mut c).is_none() && wire::closed_by_server(&mut c, Duration::from_secs(1))
}

/// Sends `frames` to `addr` with no handshake, and after a made-up proof as `role`;
/// returns a line for each attempt the server did not refuse.
fn attack(addr: SocketAddr, role: &Role, frames: &[Frame], what: &str) -> Vec<String> {
    let mut failed = Vec::new();
    let mut c = wire::raw(addr);
    for f in frames {
        let _ = std::io::Write::write_all(&mut c, &wire::encode(f));
    }
    if !closed_unanswered(c) {
        failed.push(format!("{what} with no handshake was not refused"));
    }
    let mut c = wire::forged_handshake(addr, role);
    for f in frames {
        let _ = std::io::Write::write_all(&mut c, &wire::encode(f));
    }
    if !closed_unanswered(c) {
        failed.push(format!("{what} after a made-up proof was not refused"));
    }
    failed
}

#[test]
fn forged_peer_messages_are_refused_and_change_nothing() {
    let _one = one_at_a_time();
    let out = OutDir::new("forged");
    let dir = out.path().to_path_buf();
    let args = small(
        "--system corfumason --groups 2 --sequencers 2 --duration 3 --warmup 0.5 --fsync off",
    );
    let (run, failed) = run_local_with(&args, &dir, Duration::from_secs(120), || {
        let logs = dir.join("logs");
        let primary = listen_addr(&logs.join("sequencer.log"));
        let backup = listen_addr(&logs.join("sequencer-1.log"));
        let proxies: Vec<SocketAddr> = (0..3)
            .map(|r| listen_addr(&logs.join(format!("proxy-{r}.log"))))
            .collect();
        let logs_at: Vec<SocketAddr> = (0..4)
            .map(|i| listen_addr(&logs.join(format!("log-{i}.log"))))
            .collect();
        std::thread::sleep(Duration::from_millis(800));
        let mut failed = Vec::new();
        let hello = Frame::new(Body::SeqHello(SeqHello {
            replica: 0,
            groups: vec![0, 1],
        }));
        let mut holes = Ranges::default();
        holes.push(0, 0, 10);
        for round in 0..3 {
            let backup_frames = [
                hello.clone(),
                Frame::new(Body::Takeover(Takeover { epoch: 1, group: 0 })),
                Frame::new(Body::Promise(Box::new(Promise {
                    epoch: 2,
                    group: 0,
                    ok: true,
                    promised: 2,
                    last_batch_id: 0,
                    watermarks: vec![0],
                    recorded: Some(holes.clone()),
                    ballot: 1,
                }))),
                Frame::new(Body::FillAck(FillAck {
                    epoch: 2,
                    group: 1,
                    ballot: 1,
                })),
            ];
            failed.extend(attack(
                backup,
                &Role::proxy(0, 0),
                &backup_frames,
                "a takeover",
            ));
            let get = Frame::new(Body::GetSeq(GetSeq {
                epoch: 0,
                group: 0,
                batch_id: 100 + round,
                space_mask: 1,
                counts: vec![1000],
                committed: 0,
                session: 0,
            }));
            failed.extend(attack(
                primary,
                &Role::client(1),
                &[get],
                "an epoch-0 GetSeq",
            ));
            for (r, p) in proxies.iter().enumerate() {
                let peer = Role::proxy((r as u32 + 1) % 3, 0);
                let frames = [forged_heartbeat(0), forged_heartbeat(1)];
                failed.extend(attack(*p, &peer, &frames, "a forged raft message"));
            }
            // Log server 1 is the tail of shard 0's chain: "upstream" is server 0.
            let overwrite = Frame::new(Body::LogWrite(LogWrite {
                id: 1,
                shard: 0,
                items: (0..8)
                    .map(|p| LogItem::data(p * 2, vec![0x66; 16].into()))
                    .collect(),
            }));
            failed.extend(attack(
                logs_at[1],
                &Role::log_server(0, 0),
                &[overwrite],
                "a write as the chain's upstream",
            ));
            std::thread::sleep(Duration::from_millis(300));
        }
        failed
    });
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    cluster::verified_ok(&run);
    let read =
        |name: &str| std::fs::read_to_string(dir.join("logs").join(name)).unwrap_or_default();
    assert!(
        !read("sequencer-1.log").contains("taking over"),
        "the backup took over:\n{}",
        read("sequencer-1.log")
    );
    for r in 0..3 {
        let text = read(&format!("proxy-{r}.log"));
        assert!(
            !text.contains("promised a new sequencer epoch"),
            "proxy {r} promised a new epoch"
        );
        // Every leadership this run saw was won in a small term, not the forged 100.
        for line in text.lines().filter(|l| l.contains("leading;")) {
            let term: u64 = line
                .split(" term=")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            assert!(term < 100, "proxy {r}: {line}");
        }
        for g in 0..2 {
            let p = dir.join(format!("bound-g{g}-r{r}.bin"));
            let recs = read_records::<BoundBatch>(&p).expect("records");
            assert!(
                recs.records.iter().all(|b| b.epoch == 1),
                "group {g} replica {r} bound something of another epoch"
            );
        }
    }
}
