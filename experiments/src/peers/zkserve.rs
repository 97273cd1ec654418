//! RSMKeeper and ZK-Mason in the peers benchmark, behind their ZooKeeper front ends:
//! `mason local --system rsmkeeper|zkmason --serve` (this very binary) as a child process,
//! loaded by the same ZooKeeper client, with the same workloads, as Apache ZooKeeper
//! (`zk::workload_rows`). Stopped with SIGINT afterwards.

use super::zk::workload_rows;
use super::{Load, Row, ZkWorkload};
use anyhow::Context;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `mason local --serve` child; SIGKILLed if dropped before it stopped.
struct Served {
    child: Child,
    hosts: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start(system: &str, shards: u32, load: &Load, out: &Path) -> anyhow::Result<Served> {
    let exe = std::env::current_exe().context("finding the mason binary")?;
    let name = if shards > 0 {
        format!("{system}-{shards}")
    } else {
        system.to_string()
    };
    let run_dir = out.join(format!("served-{name}"));
    let log = out.join(format!("mason-{name}.log"));
    let stderr =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(&exe);
    cmd.args(["local", "--system", system, "--serve"])
        .args(["--fsync", if load.fsync { "on" } else { "off" }])
        .arg("--out")
        .arg(&run_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    if shards > 0 {
        cmd.args(["--zk-shards", &shards.to_string()]);
    }
    if load.zk_local_reads {
        cmd.args(["--zk-reads", "local"]);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().context("mason local's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    let mut served = Served {
        child,
        hosts: String::new(),
    };
    let line = rx.recv_timeout(Duration::from_secs(60)).with_context(|| {
        format!(
            "{name} did not start serving within 60 s; see {}",
            log.display()
        )
    })?;
    served.hosts = line
        .strip_prefix("serving zookeeper on ")
        .with_context(|| format!("unexpected first line from mason local: {line}"))?
        .to_string();
    Ok(served)
}

/// Runs `system` (`rsmkeeper`, or `zkmason` with `shards`) behind its front ends, loads
/// it with each workload, and stops it.
pub async fn run(
    system: &str,
    shards: u32,
    load: &Load,
    out: &Path,
    workloads: &[ZkWorkload],
) -> anyhow::Result<Vec<Row>> {
    let mut served = start(system, shards, load, out)?;
    let label = if shards > 0 {
        format!("{system}-{shards}")
    } else {
        system.to_string()
    };
    let extra = format!(
        "mason local --serve (2 front ends{}){}",
        if shards > 0 {
            format!(", {shards} shard(s) of 3 servers")
        } else {
            String::new()
        },
        if load.fsync { "" } else { ", fsync off" }
    ) + if load.zk_local_reads {
        ", local reads"
    } else {
        ""
    };
    // Its servers: every process `mason local --serve` started (and not itself, which
    // only waits).
    let pids = mason_common::procstat::descendants(served.child.id());
    let rows = workload_rows(&label, (&served.hosts, &pids), load, workloads, &extra).await;
    if let Ok(pid) = i32::try_from(served.child.id()) {
        // SAFETY: kill(2) on the pid of a child this process started.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while served.child.try_wait()?.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows
}
