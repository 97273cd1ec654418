//! `mason status`: asks every process of a running cluster how it is, over the process's
//! own port (the handshake as a watcher, under the cluster key), and prints one table, or
//! one JSON object with `--json`. A process that does not answer in time is shown as down,
//! with why (refused, timeout, handshake, closed, bad reply): finding those is what the
//! command is for, so it is not an error.
//!
//! Each process is asked on its own thread over a blocking socket (the protocol's
//! blocking connector, `auth::connect_blocking`), every step within the one timeout.

use crate::args::StatusArgs;
use bytes::{Bytes, BytesMut};
use mason_common::auth::{self, ClusterKey, Role};
use mason_common::msg::{Body, Frame};
use mason_common::statusmsg::{GroupStatus, SeqState, StatusReply, StatusRequest};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The largest reply read (a proxy process hosting thousands of groups stays far below).
const MAX_REPLY: usize = 16 << 20;
/// Processes asked at once.
const PARALLEL: usize = 64;

/// One process to ask: where, and (from the layout or `mason local`'s addrs.txt) what it
/// is meant to be.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub expect: Option<String>,
}

/// What one process answered.
#[derive(Debug)]
pub enum Answer {
    Up {
        role: Role,
        reply: StatusReply,
    },
    Down {
        /// refused, unreachable, timeout, handshake, closed or bad-reply.
        reason: &'static str,
        detail: String,
    },
}

pub fn run(a: StatusArgs) -> anyhow::Result<i32> {
    let key = a.key.load()?;
    let targets: Vec<Target> = if a.addrs.is_empty() {
        crate::experiment::role_addrs(&a.layout)?
            .into_iter()
            .map(|(role, addr)| Target {
                addr,
                expect: Some(role),
            })
            .collect()
    } else {
        a.addrs
            .iter()
            .map(|&addr| Target { addr, expect: None })
            .collect()
    };
    let answers = ask_all(&targets, &key, Duration::from_millis(a.timeout_ms));
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&targets, &answers))?
        );
    } else {
        print!("{}", table(&targets, &answers));
    }
    Ok(0)
}

/// Asks every target, [`PARALLEL`] at a time; the answers are in the targets' order.
pub fn ask_all(targets: &[Target], key: &ClusterKey, timeout: Duration) -> Vec<Answer> {
    let mut out = Vec::with_capacity(targets.len());
    for chunk in targets.chunks(PARALLEL) {
        std::thread::scope(|s| {
            let asking: Vec<_> = chunk
                .iter()
                .map(|t| s.spawn(move || ask(t.addr, key, timeout)))
                .collect();
            for h in asking {
                out.push(h.join().unwrap_or_else(|_| Answer::Down {
                    reason: "internal",
                    detail: "the asking thread panicked".into(),
                }));
            }
        });
    }
    out
}

fn down(reason: &'static str, detail: String) -> Answer {
    Answer::Down { reason, detail }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock)
}

/// Connects, proves the key as a watcher, sends one [`StatusRequest`] and reads one
/// [`StatusReply`], all within `timeout`.
pub fn ask(addr: SocketAddr, key: &ClusterKey, timeout: Duration) -> Answer {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) if timed_out(&e) => return down("timeout", format!("connecting: {e}")),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            return down("refused", format!("connecting: {e}"))
        }
        Err(e) => return down("unreachable", format!("connecting: {e}")),
    };
    let timeouts = |s: &TcpStream| {
        s.set_read_timeout(Some(left()))
            .and_then(|_| s.set_write_timeout(Some(left())))
    };
    if let Err(e) = timeouts(&s) {
        return down("unreachable", format!("setting timeouts: {e}"));
    }
    let role = match auth::connect_blocking(&mut s, key, &Role::watcher()) {
        Ok(r) => r,
        Err(e) if timed_out(&e) => return down("timeout", format!("handshake: {e}")),
        Err(e) => return down("handshake", format!("handshake: {e}")),
    };
    let mut buf = BytesMut::new();
    mason_common::codec::encode_into(&Frame::new(Body::StatusRequest(StatusRequest {})), &mut buf);
    if let Err(e) = timeouts(&s).and_then(|_| s.write_all(&buf)) {
        return down("closed", format!("sending the request: {e}"));
    }
    let mut read = |n: usize| -> Result<Vec<u8>, (&'static str, String)> {
        let mut v = vec![0u8; n];
        let r = s
            .set_read_timeout(Some(left()))
            .and_then(|_| s.read_exact(&mut v));
        match r {
            Ok(()) => Ok(v),
            Err(e) if timed_out(&e) => Err(("timeout", "no answer in time".into())),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err((
                "closed",
                format!("{role} closed the connection without answering (a binary without `mason status`?)"),
            )),
            Err(e) => Err(("closed", format!("reading the answer: {e}"))),
        }
    };
    let len = match read(4) {
        Ok(b) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
        Err((r, d)) => return down(r, d),
    };
    if len > MAX_REPLY {
        return down("bad-reply", format!("an answer of {len} bytes"));
    }
    let body = match read(len) {
        Ok(b) => b,
        Err((r, d)) => return down(r, d),
    };
    match mason_common::codec::decode_body(Bytes::from(body)) {
        Ok(Frame {
            body: Some(Body::StatusReply(reply)),
        }) => Answer::Up {
            role,
            reply: *reply,
        },
        Ok(f) => down(
            "bad-reply",
            format!(
                "answered a {}",
                f.body.as_ref().map_or("nothing", |b| b.name())
            ),
        ),
        Err(e) => down("bad-reply", format!("an undecodable answer: {e}")),
    }
}

/// How far each follower is behind its leader: the leader's last index minus what the
/// follower is known to hold.
pub fn lags(g: &GroupStatus) -> Vec<(u32, u64)> {
    g.followers
        .iter()
        .map(|f| (f.replica, g.last_index.saturating_sub(f.matched)))
        .collect()
}

fn seq_state(state: i32) -> &'static str {
    match SeqState::try_from(state) {
        Ok(SeqState::Active) => "primary",
        Ok(SeqState::TakingOver) => "taking-over",
        Ok(SeqState::Backup) => "backup",
        Err(_) => "unknown",
    }
}

fn group_json(g: &GroupStatus) -> Value {
    let followers: Vec<Value> = g
        .followers
        .iter()
        .zip(lags(g))
        .map(|(f, (_, lag))| json!({"replica": f.replica, "matched": f.matched, "lag": lag}))
        .collect();
    json!({
        "group": g.group,
        "replica": g.replica,
        "leader": g.leader,
        "leader_replica": g.leader_replica(),
        "term": g.term,
        "commit": g.commit,
        "applied": g.applied,
        "last_index": g.last_index,
        "epoch": g.epoch,
        "serving": g.serving,
        "last_batch_id": g.last_batch_id,
        "sessions": g.sessions,
        "followers": followers,
    })
}

fn process_json(t: &Target, a: &Answer) -> Value {
    let mut v = json!({"address": t.addr.to_string(), "expected": t.expect});
    match a {
        Answer::Down { reason, detail } => {
            v["up"] = json!(false);
            v["reason"] = json!(reason);
            v["error"] = json!(detail);
        }
        Answer::Up { role, reply } => {
            v["up"] = json!(true);
            v["role"] = json!(role.to_string());
            v["kind"] = json!(format!("{:?}", role.role_kind()).to_lowercase());
            if !reply.groups.is_empty() {
                v["groups"] = reply.groups.iter().map(group_json).collect();
            }
            if let Some(s) = &reply.sequencer {
                let spaces: Vec<Value> = s
                    .next
                    .iter()
                    .enumerate()
                    .map(|(i, n)| json!({"space": i, "next": n, "watermark": s.watermarks.get(i)}))
                    .collect();
                v["sequencer"] = json!({
                    "index": s.index,
                    "state": seq_state(s.state),
                    "primary": s.state == SeqState::Active as i32,
                    "epoch": s.epoch,
                    "spaces": spaces,
                });
            }
            if let Some(l) = &reply.log_server {
                v["log_server"] = json!({"shard": l.shard, "index": l.index, "tail": l.tail,
                    "next": l.next, "pending": l.pending});
            }
            if let Some(z) = &reply.zk_server {
                v["zk_server"] = json!({"shard": z.shard, "index": z.index,
                    "applied": z.applied, "ops": z.ops, "noops": z.noops});
            }
        }
    }
    v
}

/// Per group, from every replica that answered: the replicas that say they lead (with
/// their terms), and the newest leader's term, commit and follower lags.
fn groups_json(answers: &[Answer]) -> Value {
    let mut by_group: BTreeMap<u32, Vec<&GroupStatus>> = BTreeMap::new();
    for a in answers {
        if let Answer::Up { reply, .. } = a {
            for g in &reply.groups {
                by_group.entry(g.group).or_default().push(g);
            }
        }
    }
    by_group
        .iter()
        .map(|(group, reps)| {
            let leader = reps.iter().filter(|g| g.leader).max_by_key(|g| g.term);
            let lags: Vec<Value> = leader
                .map(|l| lags(l))
                .unwrap_or_default()
                .into_iter()
                .map(|(r, lag)| json!({"replica": r, "lag": lag}))
                .collect();
            json!({
                "group": group,
                "replicas_up": reps.iter().map(|g| g.replica).collect::<Vec<_>>(),
                "leader": leader.map(|l| l.replica),
                "term": leader.map(|l| l.term),
                "commit": leader.map(|l| l.commit),
                "lags": lags,
            })
        })
        .collect()
}

pub fn to_json(targets: &[Target], answers: &[Answer]) -> Value {
    let processes: Vec<Value> = targets
        .iter()
        .zip(answers)
        .map(|(t, a)| process_json(t, a))
        .collect();
    json!({"processes": processes, "groups": groups_json(answers)})
}

fn group_line(g: &GroupStatus) -> String {
    let mut s = if g.leader {
        format!("g{} leader", g.group)
    } else {
        match g.leader_replica() {
            Some(l) => format!("g{} follower of r{l}", g.group),
            None => format!("g{} no leader known", g.group),
        }
    };
    s.push_str(&format!(
        " term {} commit {} applied {} epoch {}",
        g.term, g.commit, g.applied, g.epoch
    ));
    if g.serving {
        s.push_str(" serving");
    }
    let lags = lags(g);
    if !lags.is_empty() {
        let l: Vec<String> = lags.iter().map(|(r, lag)| format!("r{r} {lag}")).collect();
        s.push_str(&format!("; lag {}", l.join(", ")));
    }
    s
}

/// The details column of one process that answered: one line per hosted group, or one.
fn details(reply: &StatusReply) -> Vec<String> {
    let mut lines: Vec<String> = reply.groups.iter().map(group_line).collect();
    if let Some(s) = &reply.sequencer {
        let mut l = match SeqState::try_from(s.state) {
            Ok(SeqState::Backup) => format!("backup (newest epoch seen {})", s.epoch),
            Ok(SeqState::TakingOver) => format!("taking over with epoch {}", s.epoch),
            _ => format!("{} epoch {}", seq_state(s.state), s.epoch),
        };
        for (i, n) in s.next.iter().enumerate() {
            let w = s.watermarks.get(i).copied().unwrap_or(0);
            l.push_str(&format!("; s{i} next {n} watermark {w}"));
        }
        lines.push(l);
    }
    if let Some(l) = &reply.log_server {
        lines.push(format!(
            "tail {} next {} pending {}",
            l.tail, l.next, l.pending
        ));
    }
    if let Some(z) = &reply.zk_server {
        lines.push(format!(
            "applied {} ops {} noops {}",
            z.applied, z.ops, z.noops
        ));
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

pub fn table(targets: &[Target], answers: &[Answer]) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for (t, a) in targets.iter().zip(answers) {
        let (role, state, lines) = match a {
            Answer::Up { role, reply } => (role.to_string(), "up", details(reply)),
            Answer::Down { reason, detail } => (
                t.expect.clone().unwrap_or_else(|| "?".into()),
                "down",
                vec![format!("{reason}: {detail}")],
            ),
        };
        for (i, l) in lines.into_iter().enumerate() {
            rows.push(if i == 0 {
                [role.clone(), t.addr.to_string(), state.to_string(), l]
            } else {
                [String::new(), String::new(), String::new(), l]
            });
        }
    }
    let head = ["ROLE", "ADDRESS", "STATE", "DETAILS"].map(String::from);
    let width = |c: usize| {
        rows.iter()
            .chain(std::iter::once(&head))
            .map(|r| r[c].len())
            .max()
            .unwrap_or(0)
    };
    let w = [width(0), width(1), width(2)];
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `mason local`: writes `<out>/addrs.txt`, one `role<TAB>address` line per process that
/// `mason status` can ask (log servers, sequencers, ZK-Mason shard servers, proxies), and
/// returns the command that asks them.
pub fn write_local_addrs(
    out: &std::path::Path,
    seqs: &[SocketAddr],
    proxies: &[SocketAddr],
    logs: Option<&crate::logrun::LogLayout>,
    zk: &[SocketAddr],
    zk_per_shard: usize,
) -> std::io::Result<String> {
    let mut procs: Vec<(Role, SocketAddr)> = Vec::new();
    if let Some(l) = logs {
        let r = l.replication.max(1);
        for (i, a) in l.addrs.iter().enumerate() {
            procs.push((Role::log_server(i as u32 / r, i as u32 % r), *a));
        }
    }
    for (i, a) in seqs.iter().enumerate() {
        procs.push((Role::sequencer(i as u32), *a));
    }
    for (k, a) in zk.iter().enumerate() {
        let n = zk_per_shard.max(1);
        procs.push((Role::zk_server((k / n) as u32, (k % n) as u32), *a));
    }
    for (r, a) in proxies.iter().enumerate() {
        procs.push((Role::proxy(r as u32, 0), *a));
    }
    let text: String = procs.iter().map(|(r, a)| format!("{r}\t{a}\n")).collect();
    std::fs::write(out.join("addrs.txt"), text)?;
    let list: Vec<String> = procs.iter().map(|(_, a)| a.to_string()).collect();
    Ok(format!(
        "mason status --addrs {} --cluster-key-file {}",
        list.join(","),
        out.join("cluster.key").display()
    ))
}

/// Puts `status: <command>` at the head of `<out>/summary.txt` (after the run: the
/// report's own lines, on stdout too, stay as they are).
pub fn head_summary(out: &std::path::Path, command: &str) -> std::io::Result<()> {
    let path = out.join("summary.txt");
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(&path, format!("status: {command}\n{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mason_common::statusmsg::FollowerStatus;

    #[test]
    fn a_follower_lags_by_what_it_lacks_of_the_leaders_log() {
        let g = GroupStatus {
            leader: true,
            last_index: 100,
            followers: vec![
                FollowerStatus {
                    replica: 1,
                    matched: 100,
                },
                FollowerStatus {
                    replica: 2,
                    matched: 37,
                },
            ],
            ..Default::default()
        };
        assert_eq!(lags(&g), vec![(1, 0), (2, 63)]);
    }

    #[test]
    fn nothing_listening_is_down_not_an_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        let key = ClusterKey::generate();
        let t = [Target {
            addr,
            expect: Some("sequencer 0".into()),
        }];
        let a = ask_all(&t, &key, Duration::from_millis(500));
        assert!(
            matches!(
                a[0],
                Answer::Down {
                    reason: "refused",
                    ..
                }
            ),
            "{a:?}"
        );
        let j = to_json(&t, &a);
        assert_eq!(j["processes"][0]["up"], json!(false));
        assert_eq!(j["processes"][0]["reason"], json!("refused"));
        assert!(table(&t, &a).contains("sequencer 0"));
    }
}
