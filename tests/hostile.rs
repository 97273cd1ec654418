//! A hostile LAN against a running cluster (`mason local` on loopback):
//! - connections that never finish their handshake, connections that authenticate and
//!   then sit idle, connections that send only a length prefix announcing the largest
//!   frame their role may send, and a client that sends ops and never reads the answers:
//!   every process's memory stays within a bound, the greedy client is disconnected, and
//!   the verdict holds;
//! - bursts of junk frames and bare length prefixes at every port: they cost the protocol
//!   nothing it would notice (no sequencer takeover happens that a quiet run would not
//!   have), and the verdict holds.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/wire.rs"]
mod wire;

use cluster::{listen_addr, one_at_a_time, run_local_with, small, OutDir};
use mason_common::auth::{ClusterKey, Role};
use mason_common::msg::{Body, ClientOp, Frame, Register, SeqHello};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// The run's role processes (those whose command line names `dir`), by name and pid.
fn role_pids(dir: &Path) -> Vec<(String, u32)> {
    let d = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.len() < 2 || args[1] == "local" || !args.iter().any(|a| a.contains(&d)) {
            continue;
        }
        let name = match args[1].as_str() {
            "proxy" => format!("proxy-{}", args.get(3).cloned().unwrap_or_default()),
            other => format!("{other} {pid}"),
        };
        out.push((name, pid));
    }
    out.sort();
    out
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn addrs(logs: &Path) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let seqs = vec![
        listen_addr(&logs.join("sequencer.log")),
        listen_addr(&logs.join("sequencer-1.log")),
    ];
    let proxies = (0..3)
        .map(|r| listen_addr(&logs.join(format!("proxy-{r}.log"))))
        .collect();
    (seqs, proxies)
}

/// A client that opens a session with group 0 and then sends ops touching all 64
/// spaces, never reading the answers. Returns whether the server closed it within
/// `limit` (the answers it does not read must not pile up without bound).
fn greedy_client(proxies: &[SocketAddr], key: &ClusterKey, limit: Duration) -> bool {
    // Find the leader: it answers the registration with a session.
    let mut conn = None;
    for _ in 0..50 {
        for &p in proxies {
            let (mut c, _) = wire::connect_as(p, key, &Role::client(4096));
            wire::send(
                &mut c,
                &Frame::new(Body::Register(Register {
                    group: 0,
                    client_id: 666,
                    nonce: 1,
                    window: 4096,
                })),
            );
            if let Some(Frame {
                body: Some(Body::Registered(r)),
            }) = wire::try_recv(&mut c)
            {
                if r.session != 0 {
                    conn = Some((c, r.session));
                    break;
                }
            }
        }
        if conn.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some((mut c, session)) = conn else {
        panic!("no proxy opened a session");
    };
    c.set_write_timeout(Some(Duration::from_millis(500))).ok();
    let started = Instant::now();
    let mut seq = 1u64;
    while started.elapsed() < limit {
        let mut burst = Vec::new();
        for _ in 0..256 {
            burst.extend(wire::encode(&Frame::new(Body::ClientOp(ClientOp {
                session,
                client_seq: seq,
                group: 0,
                space_mask: u64::MAX,
                payload: Default::default(),
                // It says it holds every earlier answer, so each op is within its window
                // and answered in full (it reads none of them).
                acked_below: seq,
            }))));
            seq += 1;
        }
        match c.write_all(&burst) {
            Ok(()) => {}
            // Full: the server stopped reading; or closed.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn memory_stays_bounded_against_idle_prefixed_and_unread_connections() {
    let _one = one_at_a_time();
    let out = OutDir::new("memory");
    let dir = out.path().to_path_buf();
    let args = small(
        "--groups 2 --spaces 64 --op-spaces 1 --duration 7 --warmup 1 --fsync off --sequencers 2 \
         --conn-queue-mb 1",
    );
    let (run, (before, after, greedy_closed)) =
        run_local_with(&args, &dir, Duration::from_secs(180), || {
            let logs = dir.join("logs");
            let (seqs, proxies) = addrs(&logs);
            let key = ClusterKey::from_file(&dir.join("cluster.key")).expect("the run's key");
            std::thread::sleep(Duration::from_millis(1500));
            let pids = role_pids(&dir);
            assert!(pids.len() >= 7, "role processes: {pids:?}");
            let before: Vec<(String, u64)> =
                pids.iter().map(|(n, p)| (n.clone(), rss_kib(*p))).collect();
            let mut held: Vec<TcpStream> = Vec::new();
            let ports: Vec<SocketAddr> = seqs.iter().chain(&proxies).copied().collect();
            // 250 connections that never start their handshake, 250 that finish it as
            // clients and then say nothing.
            for i in 0..250 {
                held.push(wire::raw(ports[i % ports.len()]));
            }
            for i in 0..250 {
                let (c, _) = wire::connect_as(proxies[i % 3], &key, &Role::client(1));
                held.push(c);
            }
            // 200 that announce the largest frame their role may send, and send no more:
            // 16 MiB from "proxies" at the sequencers, 1 MiB + 4 KiB from clients at the
            // proxies.
            for i in 0..200 {
                let (mut c, len) = if i % 2 == 0 {
                    let (mut c, _) = wire::connect_as(seqs[i % 2], &key, &Role::proxy(0, 0));
                    wire::send(
                        &mut c,
                        &Frame::new(Body::SeqHello(SeqHello {
                            replica: 0,
                            groups: vec![0],
                        })),
                    );
                    (c, 16u32 << 20)
                } else {
                    let (c, _) = wire::connect_as(proxies[i % 3], &key, &Role::client(1));
                    (c, (1u32 << 20) + 4096)
                };
                c.write_all(&len.to_be_bytes()).expect("a length prefix");
                held.push(c);
            }
            let greedy_closed = greedy_client(&proxies, &key, Duration::from_secs(4));
            std::thread::sleep(Duration::from_millis(300));
            let after: Vec<(String, u64)> =
                pids.iter().map(|(n, p)| (n.clone(), rss_kib(*p))).collect();
            drop(held);
            (before, after, greedy_closed)
        });
    eprintln!("rss before (KiB): {before:?}\nrss during the attack (KiB): {after:?}");
    assert!(
        greedy_closed,
        "the client that never read its answers was not disconnected"
    );
    // The bound: no process grew by more than 48 MiB under the attack (700 connections,
    // 200 of them announcing up to 16 MiB), and none holds more than 256 MiB.
    for ((name, b), (_, a)) in before.iter().zip(&after) {
        assert!(
            *a <= b + 48 * 1024 && *a <= 256 * 1024,
            "{name}: {b} KiB before, {a} KiB during the attack"
        );
    }
    cluster::verified_ok(&run);
    let logs: String = (0..3)
        .flat_map(|r| std::fs::read_to_string(dir.join("logs").join(format!("proxy-{r}.log"))))
        .collect();
    assert!(
        logs.contains("outgoing queue passed the bound"),
        "no proxy logged why it closed the greedy client"
    );
}

/// Junk at every port, in bursts: frames that do not decode, bare prefixes, frames
/// before any handshake. The groups' sequencer never looks silent to them.
#[test]
fn garbage_at_every_port_starts_no_takeover() {
    let _one = one_at_a_time();
    let out = OutDir::new("garbage");
    let dir = out.path().to_path_buf();
    let args = small("--groups 2 --duration 5 --warmup 1 --fsync off --sequencers 2");
    let (run, bursts) = run_local_with(&args, &dir, Duration::from_secs(180), || {
        let logs = dir.join("logs");
        let (seqs, proxies) = addrs(&logs);
        let ports: Vec<SocketAddr> = seqs.iter().chain(&proxies).copied().collect();
        std::thread::sleep(Duration::from_millis(1000));
        let junk: [&[u8]; 4] = [
            &[0, 0, 0, 3, 0xff, 0xff, 0xff],
            &[0xff, 0xff, 0xff, 0xf0],
            &[0, 0, 0, 2, 0x08, 0x80],
            &[0, 16, 0, 0],
        ];
        let until = Instant::now() + Duration::from_millis(3500);
        let mut bursts = 0;
        while Instant::now() < until {
            let mut held = Vec::new();
            for (i, p) in ports.iter().enumerate() {
                for k in 0..40 {
                    let Ok(mut c) = TcpStream::connect(p) else {
                        continue;
                    };
                    let _ = c.write_all(junk[(i + k) % junk.len()]);
                    held.push(c);
                }
            }
            bursts += 1;
            std::thread::sleep(Duration::from_millis(50));
            drop(held);
        }
        bursts
    });
    assert!(bursts > 10, "{bursts} bursts");
    cluster::verified_ok(&run);
    for r in 0..3 {
        let text = std::fs::read_to_string(dir.join("logs").join(format!("proxy-{r}.log")))
            .unwrap_or_default();
        assert!(
            !text.contains("asking a backup to take over"),
            "proxy {r} asked for a takeover under garbage:\n{}",
            text.lines()
                .filter(|l| l.contains("take over"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let backup =
        std::fs::read_to_string(dir.join("logs").join("sequencer-1.log")).unwrap_or_default();
    assert!(!backup.contains("taking over"), "{backup}");
}
