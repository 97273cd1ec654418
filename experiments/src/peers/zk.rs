//! Apache ZooKeeper in the peers benchmark: a 3-server ensemble on loopback (Debian's
//! `zookeeper` package, one JVM per server), loaded with sequential-znode creates: each
//! `create /seq/n-` in PERSISTENT_SEQUENTIAL mode returns a name whose suffix is the
//! allocated number.

use super::load::{drive, Outcome, Tally};
use super::procs::{find_program, free_ports, Servers};
use super::{Load, Row, ZkWorkload};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use zookeeper_client as zk;

const SERVERS: usize = 3;
const PARENT: &str = "/seq";
const PREFIX: &str = "/seq/n-";
/// Where Debian puts the server jar; its manifest's Class-Path names its dependencies.
const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";
/// An SLF4J binding, so the servers' logs reach their log files (else SLF4J drops them).
const SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";
/// How long the ensemble may take to elect a leader and serve.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Why ZooKeeper cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    if find_program("java", &["/usr/bin/java"]).is_none() {
        return Some("skipped: no java (apt-get install default-jre-headless)".into());
    }
    if !Path::new(ZK_JAR).is_file() {
        return Some(format!("skipped: no {ZK_JAR} (apt-get install zookeeper)"));
    }
    None
}

/// One server's ports.
struct Ports {
    client: u16,
    quorum: u16,
    election: u16,
}

/// zoo.cfg for one server of the ensemble (`quorum`: every server's quorum and election
/// ports, in id order from 1).
pub fn config(data_dir: &Path, client_port: u16, quorum: &[(u16, u16)], fsync: bool) -> String {
    let mut cfg = format!(
        "tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={client_port}\n\
         clientPortAddress=127.0.0.1\nmaxClientCnxns=0\nadmin.enableServer=false\n\
         4lw.commands.whitelist=srvr,ruok\n",
        data_dir.display()
    );
    if !fsync {
        cfg.push_str("forceSync=no\n");
    }
    for (i, (q, e)) in quorum.iter().enumerate() {
        let _ = writeln!(cfg, "server.{}=127.0.0.1:{q}:{e}", i + 1);
    }
    cfg
}

/// Starts the ensemble in `dir`, logs to `<out>/zookeeper-<id>.log`; returns the guard
/// and the connect string.
fn start(dir: &Path, out: &Path, fsync: bool) -> anyhow::Result<(Servers, String)> {
    let java = find_program("java", &["/usr/bin/java"]).context("no java")?;
    let p = free_ports(3 * SERVERS)?;
    let ports: Vec<Ports> = p
        .chunks(3)
        .map(|c| Ports {
            client: c[0],
            quorum: c[1],
            election: c[2],
        })
        .collect();
    let quorum: Vec<(u16, u16)> = ports.iter().map(|p| (p.quorum, p.election)).collect();
    let mut classpath = ZK_JAR.to_string();
    if Path::new(SLF4J_SIMPLE).is_file() {
        classpath = format!("{classpath}:{SLF4J_SIMPLE}");
    }
    let mut servers = Servers::default();
    for (i, port) in ports.iter().enumerate() {
        let id = i + 1;
        let sdir = dir.join(format!("zk{id}"));
        let data = sdir.join("data");
        std::fs::create_dir_all(&data)?;
        std::fs::write(data.join("myid"), format!("{id}\n"))?;
        let cfg_path = sdir.join("zoo.cfg");
        std::fs::write(&cfg_path, config(&data, port.client, &quorum, fsync))?;
        let mut cmd = Command::new(&java);
        cmd.args(["-Xms256m", "-Xmx1g", "-XX:+UseG1GC"])
            .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
            .arg("-Dzookeeper.admin.enableServer=false")
            .args(["-cp", &classpath])
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg_path);
        servers.spawn(
            &format!("zookeeper-{id}"),
            cmd,
            &out.join(format!("zookeeper-{id}.log")),
        )?;
    }
    let connect = ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.client))
        .collect::<Vec<_>>()
        .join(",");
    Ok((servers, connect))
}

async fn connect(cluster: &str) -> anyhow::Result<zk::Client> {
    zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(cluster)
        .await
        .with_context(|| format!("connecting to ZooKeeper at {cluster}"))
}

/// Waits until the ensemble takes writes (a session and the creation of the parent node,
/// which needs a quorum).
async fn wait_serving(servers: &mut Servers, cluster: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    loop {
        servers.check_alive()?;
        let attempt = async {
            let c = connect(cluster).await?;
            match c.create(PARENT, &[], &opts).await {
                Ok(_) | Err(zk::Error::NodeExists) => Ok(()),
                Err(e) => Err(anyhow::Error::new(e).context("creating /seq")),
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(())) => {
                tracing::info!(secs = started.elapsed().as_secs_f64(), "ZooKeeper serving");
                return Ok(());
            }
            Ok(Err(e)) if started.elapsed() > START_TIMEOUT => {
                return Err(e.context("ZooKeeper ensemble did not start"))
            }
            Err(_) if started.elapsed() > START_TIMEOUT => {
                anyhow::bail!("ZooKeeper ensemble did not start in {START_TIMEOUT:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Closes the sessions and waits (a little) until the servers have taken the close, so
/// that no session task is still reconnecting once the servers are gone.
async fn close(sessions: Vec<zk::Client>) {
    let mut watchers: Vec<_> = sessions.iter().map(zk::Client::state_watcher).collect();
    drop(sessions);
    let closed = async {
        for w in &mut watchers {
            while !w.peek_state().is_terminated() {
                w.changed().await;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(3), closed)
        .await
        .is_err()
    {
        tracing::warn!("ZooKeeper sessions did not close within 3 s");
    }
}

/// Runs the ZooKeeper figures: start, wait, load each workload, stop.
pub async fn run(load: &Load, out: &Path, workloads: &[ZkWorkload]) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::Builder::new()
        .prefix("mason-peers-zk-")
        .tempdir()
        .context("creating ZooKeeper's temporary directory")?;
    let (mut servers, cluster) = start(dir.path(), out, load.fsync)?;
    wait_serving(&mut servers, &cluster).await?;
    let extra = if load.fsync {
        "3 JVMs"
    } else {
        "3 JVMs; forceSync=no"
    };
    let pids = servers.pids();
    let rows = workload_rows("zookeeper", (&cluster, &pids), load, workloads, extra).await?;
    servers.check_alive()?;
    drop(servers);
    Ok(rows)
}

/// The znodes setData and getData work on: `/bench/n{k}`, k below this.
const ZNODES: u32 = 64;

/// Creates what the workloads need (what exists already is fine).
async fn prepare(c: &zk::Client) -> anyhow::Result<()> {
    let opts = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let mut paths = vec![PARENT.to_string(), "/bench".to_string()];
    paths.extend((0..ZNODES).map(|k| format!("/bench/n{k}")));
    for p in paths {
        match c.create(&p, b"01234567", &opts).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(format!("creating {p}"))),
        }
    }
    Ok(())
}

/// Loads the ZooKeeper-protocol server at `cluster` (a connect string) with each of
/// `workloads` in turn, through the same client (the `zookeeper-client` crate): the first
/// after `load.warmup`, the next ones after a second each. One row per workload, named
/// `<system> <workload>`, with the CPU of the processes `servers` per op.
pub async fn workload_rows(
    system: &str,
    (cluster, servers): (&str, &[u32]),
    load: &Load,
    workloads: &[ZkWorkload],
    extra: &str,
) -> anyhow::Result<Vec<Row>> {
    let mut sessions = Vec::new();
    for _ in 0..load.sessions() {
        sessions.push(connect(cluster).await?);
    }
    if let Some(c) = sessions.first() {
        prepare(c).await?;
    }
    tracing::info!(
        system,
        sessions = sessions.len(),
        k = load.concurrency,
        "ZooKeeper-protocol load"
    );
    let mut rows = Vec::new();
    for (i, &w) in workloads.iter().enumerate() {
        let warmup = if i == 0 {
            load.warmup
        } else {
            load.warmup.min(Duration::from_secs(1))
        };
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tally = drive(
            &sessions,
            load.concurrency,
            (warmup, load.duration),
            servers.to_vec(),
            move |c: zk::Client, _end| {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % ZNODES;
                async move {
                    let path = format!("/bench/n{k}");
                    let number = match w {
                        ZkWorkload::Create => {
                            let opts = zk::CreateMode::PersistentSequential
                                .with_acls(zk::Acls::anyone_all());
                            c.create(PREFIX, &[], &opts).await?.1.into_i64()
                        }
                        ZkWorkload::Setdata => c.set_data(&path, b"76543210", None).await?.mzxid,
                        ZkWorkload::Getdata => c.get_data(&path).await?.1.mzxid,
                    };
                    Ok(Some(Outcome { number, retries: 0 }))
                }
            },
        )
        .await;
        let name = format!("{system} {}", workload_name(w));
        let note = note(&mut tally, load, w, extra);
        rows.push(Row::measured(&name, &tally, note));
    }
    close(sessions).await;
    Ok(rows)
}

pub fn workload_name(w: ZkWorkload) -> &'static str {
    match w {
        ZkWorkload::Create => "create",
        ZkWorkload::Setdata => "setdata",
        ZkWorkload::Getdata => "getdata",
    }
}

fn note(t: &mut Tally, load: &Load, w: ZkWorkload, extra: &str) -> String {
    let what = match w {
        ZkWorkload::Create => {
            let (n, dups, holes) = t.check_numbers();
            let verdict = if dups == 0 {
                format!("unique ({n} numbers, {holes} holes)")
            } else {
                format!("DUPLICATES: {dups} of {n}")
            };
            format!("create {PREFIX} sequential, number = suffix; {verdict}")
        }
        ZkWorkload::Setdata => format!("setData of /bench/n0..{ZNODES}, 8 bytes"),
        ZkWorkload::Getdata => format!("getData of /bench/n0..{ZNODES}"),
    };
    format!(
        "{what}; {extra}; {} sessions in this process{}",
        load.sessions(),
        t.errors_note()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_the_ensemble() {
        let d = Path::new("/tmp/x/zk1/data");
        let cfg = config(d, 2181, &[(2888, 3888), (2889, 3889), (2890, 3890)], false);
        assert!(cfg.contains("dataDir=/tmp/x/zk1/data\n"));
        assert!(cfg.contains("clientPort=2181\n"));
        assert!(cfg.contains("forceSync=no\n"));
        assert!(cfg.contains("server.1=127.0.0.1:2888:3888\n"));
        assert!(cfg.contains("server.3=127.0.0.1:2890:3890\n"));
        let synced = config(d, 2181, &[(2888, 3888)], true);
        assert!(!synced.contains("forceSync"));
    }
}
