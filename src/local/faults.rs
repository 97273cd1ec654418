//! `mason local`'s fault schedule: the kills and restarts its flags ask for
//! (`--kill-follower`, `--kill-leader`, `--kill-sequencer`, `--kill-log-server`,
//! `--kill-zk-server`, `--kill-client` and their restarts), each done once when its time
//! comes, and what they leave for the verdict: replicas that cannot have ended their
//! records, servers still down, and the kills' times for the recovery record.

use super::{leader_of, spawn, Cluster};
use crate::args::LocalArgs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// The shard server a `--kill-zk-server` hits: server 1 of shard 0.
pub(super) const ZK_VICTIM: usize = 1;

/// The running cluster, and how to start one of its processes again.
pub(super) struct Procs<'a> {
    pub cluster: &'a mut Cluster,
    pub endpoints: &'a mut super::metrics::Endpoints,
    pub exe: &'a Path,
    pub logs: &'a Path,
    /// The run's start, for the kills' times.
    pub t0: Instant,
    /// Whether the clients go through proxy groups (mason and corfumason).
    pub mason: bool,
    pub proxy_idx: &'a [usize],
    pub seq_idx: &'a [usize],
    pub log_idx: &'a [usize],
    pub zk_idx: &'a [usize],
    pub client_idx: &'a [usize],
    pub log_addrs: &'a [SocketAddr],
    pub proxy_args: &'a dyn Fn(u32) -> Vec<String>,
    pub log_args: &'a dyn Fn(usize) -> Vec<String>,
    pub zk_args: &'a dyn Fn(usize) -> Vec<String>,
    /// Client 0's arguments (a restarted client keeps its index, with new sessions).
    pub client_args: &'a dyn Fn() -> Vec<String>,
}

impl Procs<'_> {
    fn kill(&mut self, i: usize) {
        let c: &mut Child = &mut self.cluster.procs[i].1;
        let _ = c.kill();
        let _ = c.wait();
    }

    fn respawn(
        &mut self,
        i: usize,
        name: &str,
        args: Vec<String>,
        stdout: bool,
    ) -> anyhow::Result<()> {
        let args = self.endpoints.with(name, args)?;
        let log = self.logs.join(format!("{name}.restarted.log"));
        self.cluster.procs[i].1 = spawn(self.exe, &args, &log, stdout)?;
        Ok(())
    }
}

/// What has been done so far.
#[derive(Default)]
pub(super) struct Faults {
    follower_killed: bool,
    follower_restarted: bool,
    leader_killed: bool,
    /// The replica killed as group 0's leader.
    pub killed_leader: Option<u32>,
    seq_killed: bool,
    log_killed: bool,
    log_restarted: bool,
    zk_killed: bool,
    zk_restarted: bool,
    client_killed: bool,
    client_restarted: bool,
    /// `t_ms,what` lines: when each kill was made.
    pub kill_log: String,
}

impl Faults {
    pub(super) fn new() -> Faults {
        Faults {
            kill_log: String::from("t_ms,what\n"),
            ..Faults::default()
        }
    }

    /// Does what is due at `t` (since the load started).
    pub(super) fn step(&mut self, a: &LocalArgs, t: Duration, p: &mut Procs) -> anyhow::Result<()> {
        let at = t.as_secs_f64();
        let due = |k: Option<Duration>| k.is_some_and(|k| t >= k);
        if p.mason && !self.follower_killed && due(a.kill_follower) {
            p.kill(p.proxy_idx[2]);
            self.follower_killed = true;
            eprintln!("mason local: SIGKILLed proxy 2 at {at:.2}s");
        }
        if p.mason && !self.leader_killed && due(a.kill_leader) {
            self.leader_killed = true;
            match leader_of(p.logs, 0) {
                Some(r) => {
                    p.kill(p.proxy_idx[r as usize]);
                    self.killed_leader = Some(r);
                    self.note(p, "leader");
                    eprintln!("mason local: SIGKILLed proxy {r} (leader of group 0) at {at:.2}s");
                }
                None => eprintln!("mason local: no leader of group 0 found to kill"),
            }
        }
        if p.mason && !self.seq_killed && due(a.kill_sequencer) {
            self.seq_killed = true;
            p.kill(p.seq_idx[0]);
            self.note(p, "sequencer");
            eprintln!("mason local: SIGKILLed the primary sequencer at {at:.2}s");
        }
        let victim = a.log_victim as usize;
        if !p.log_idx.is_empty() && !self.log_killed && due(a.kill_log_server) {
            self.log_killed = true;
            p.kill(p.log_idx[victim]);
            self.note(p, "log-server");
            eprintln!(
                "mason local: SIGKILLed log server {victim} ({}) at {at:.2}s",
                p.log_addrs[victim]
            );
        }
        if self.log_killed && !self.log_restarted && due(a.restart_log_server) {
            self.log_restarted = true;
            let args = (p.log_args)(victim);
            p.respawn(p.log_idx[victim], &format!("log-{victim}"), args, false)?;
            eprintln!("mason local: restarted log server {victim} at {at:.2}s");
        }
        if !self.zk_killed && ZK_VICTIM < p.zk_idx.len() && due(a.kill_zk_server) {
            self.zk_killed = true;
            p.kill(p.zk_idx[ZK_VICTIM]);
            self.note(p, "zk-server");
            eprintln!("mason local: SIGKILLed shard server {ZK_VICTIM} of shard 0 at {at:.2}s");
        }
        if self.zk_killed && !self.zk_restarted && due(a.restart_zk_server) {
            self.zk_restarted = true;
            let args = (p.zk_args)(ZK_VICTIM);
            p.respawn(
                p.zk_idx[ZK_VICTIM],
                &format!("zk-s0-r{ZK_VICTIM}"),
                args,
                false,
            )?;
            eprintln!("mason local: restarted shard server {ZK_VICTIM} of shard 0 at {at:.2}s");
        }
        if self.follower_killed && !self.follower_restarted && due(a.restart_follower) {
            let args = (p.proxy_args)(2);
            p.respawn(p.proxy_idx[2], "proxy-2", args, false)?;
            self.follower_restarted = true;
            eprintln!("mason local: restarted proxy 2 at {at:.2}s");
        }
        if !self.client_killed && due(a.kill_client) {
            self.client_killed = true;
            p.kill(p.client_idx[0]);
            eprintln!("mason local: SIGKILLed client 0 at {at:.2}s");
        }
        if self.client_killed && !self.client_restarted && due(a.restart_client) {
            self.client_restarted = true;
            let args = (p.client_args)();
            p.respawn(p.client_idx[0], "client-0", args, true)?;
            eprintln!("mason local: restarted client 0 (same index, new sessions) at {at:.2}s");
        }
        Ok(())
    }

    fn note(&mut self, p: &Procs, what: &str) {
        self.kill_log
            .push_str(&format!("{},{what}\n", p.t0.elapsed().as_millis()));
    }

    /// Client processes still to finish; fails if one failed.
    pub(super) fn clients_running(&self, a: &LocalArgs, p: &mut Procs) -> anyhow::Result<usize> {
        let mut running = 0;
        for (k, &i) in p.client_idx.iter().enumerate() {
            let (name, c) = &mut p.cluster.procs[i];
            match c.try_wait()? {
                None => running += 1,
                // Killed on purpose, and not (or not yet) started again.
                Some(_) if k == 0 && self.client_killed && !self.client_restarted => {
                    if a.restart_client.is_some() {
                        running += 1;
                    }
                }
                Some(st) if !st.success() => {
                    anyhow::bail!("{name} failed ({st}); see {}", p.logs.display())
                }
                Some(_) => {}
            }
        }
        Ok(running)
    }

    /// A log server killed and not started again: the log cannot be checked whole.
    pub(super) fn log_server_down(&self) -> bool {
        self.log_killed && !self.log_restarted
    }

    pub(super) fn zk_restarted(&self) -> bool {
        self.zk_restarted
    }

    /// The shard server killed and not started again, if any.
    pub(super) fn zk_server_down(&self) -> bool {
        self.zk_killed && !self.zk_restarted
    }

    /// Replicas (group, replica) that were killed and never restarted: they cannot have
    /// ended their records.
    pub(super) fn unfinished(&self) -> Vec<(u32, u32)> {
        let mut v = Vec::new();
        if let Some(r) = self.killed_leader {
            v.push((0, r));
        }
        if self.follower_killed && !self.follower_restarted {
            v.push((0, 2));
        }
        v
    }
}
