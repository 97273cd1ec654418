//! etcd in the peers benchmark: a 3-member cluster on loopback (Debian's `etcd-server`),
//! with two figures. `etcd`: puts to one key, each numbered by the revision in its
//! response header (etcd's global, increasing counter). `etcd-cas`: a counter kept in one
//! key and incremented by compare-and-swap transactions, retried on conflict.

use super::etcd_proto::{
    Compare, CompareTarget, Kv, PutRequest, RangeRequest, Request, RequestOp, Response, TxnRequest,
    COMPARE_EQUAL, TARGET_VALUE,
};
use super::load::{drive, Outcome, Tally};
use super::procs::{find_program, free_ports, Servers};
use super::{Load, Row};
use anyhow::Context;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MEMBERS: usize = 3;
const SEQ_KEY: &[u8] = b"seq";
const CTR_KEY: &[u8] = b"ctr";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The etcd binary, if installed.
pub fn binary() -> Option<PathBuf> {
    find_program("etcd", &["/usr/bin/etcd"])
}

/// What `etcd <arg>` prints (stdout and stderr), empty if it cannot run.
fn etcd_says(etcd: &Path, arg: &str) -> String {
    Command::new(etcd)
        .arg(arg)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default()
}

/// The version from `etcd --version` (`etcd Version: 3.4.23`).
pub fn parse_version(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("etcd Version:"))
        .map(str::trim)
}

/// The `--initial-cluster` value for members `m0..` on the given peer ports.
pub fn initial_cluster(peer_ports: &[u16]) -> String {
    peer_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A running cluster: its guard and the members' client URLs.
pub struct Cluster {
    servers: Servers,
    urls: Vec<String>,
    version: String,
    /// What the note column says about durability.
    pub fsync_note: Option<String>,
}

/// Starts the cluster in `dir` (logs to `<out>/etcd-m<i>.log`) and waits until it takes
/// writes.
pub async fn start(etcd: &Path, dir: &Path, out: &Path, fsync: bool) -> anyhow::Result<Cluster> {
    let ports = free_ports(2 * MEMBERS)?;
    let (client_ports, peer_ports) = ports.split_at(MEMBERS);
    let initial = initial_cluster(peer_ports);
    let version = parse_version(&etcd_says(etcd, "--version"))
        .unwrap_or("?")
        .to_string();
    // `--unsafe-no-fsync` came with etcd 3.5.
    let no_fsync = !fsync && etcd_says(etcd, "--help").contains("--unsafe-no-fsync");
    let fsync_note = match (fsync, no_fsync) {
        (true, _) => None,
        (false, true) => Some("--unsafe-no-fsync".to_string()),
        (false, false) => Some("fsync ON: this etcd has no --unsafe-no-fsync (3.5+)".to_string()),
    };
    let mut servers = Servers::default();
    let mut urls = Vec::new();
    for i in 0..MEMBERS {
        let client = format!("http://127.0.0.1:{}", client_ports[i]);
        let peer = format!("http://127.0.0.1:{}", peer_ports[i]);
        let mut cmd = Command::new(etcd);
        // Settings from the environment (ETCD_*) would mix with the flags: drop them.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(&k);
            }
        }
        cmd.args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("m{i}")))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", "mason-peers"])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if no_fsync {
            cmd.arg("--unsafe-no-fsync");
        }
        servers.spawn(
            &format!("etcd-m{i}"),
            cmd,
            &out.join(format!("etcd-m{i}.log")),
        )?;
        urls.push(client);
    }
    let mut cluster = Cluster {
        servers,
        urls,
        version,
        fsync_note,
    };
    cluster.wait_serving().await?;
    Ok(cluster)
}

impl Cluster {
    /// Waits until a put through every member succeeds (a leader is elected and every
    /// member forwards to it); the put sets the CAS counter to 0.
    async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        for url in &self.urls {
            loop {
                self.servers.check_alive()?;
                let attempt = async {
                    let kv = Kv::connect(url.clone()).await?;
                    kv.put(PutRequest {
                        key: CTR_KEY.to_vec(),
                        value: b"0".to_vec(),
                    })
                    .await
                };
                match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                    Ok(Ok(_)) => break,
                    _ if started.elapsed() > START_TIMEOUT => {
                        anyhow::bail!("etcd cluster did not serve within {START_TIMEOUT:?}")
                    }
                    _ => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            }
        }
        tracing::info!(secs = started.elapsed().as_secs_f64(), "etcd serving");
        Ok(())
    }

    /// `n` client connections, spread over the members.
    async fn sessions(&self, n: u32) -> anyhow::Result<Vec<Kv>> {
        let mut v = Vec::new();
        for i in 0..n as usize {
            let url = &self.urls[i % self.urls.len()];
            v.push(
                Kv::connect(url.clone())
                    .await
                    .with_context(|| format!("connecting to etcd at {url}"))?,
            );
        }
        Ok(v)
    }

    /// Stops the members; fails if one died during the run.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.servers.check_alive()
    }

    fn note(&self, what: String, t: &mut Tally, load: &Load) -> String {
        let (n, dups, holes) = t.check_numbers();
        let mut note = format!(
            "{what}; 3 members, etcd {}; {} gRPC connections in this process; ",
            self.version,
            load.sessions()
        );
        if dups == 0 {
            let _ = write!(note, "unique ({n} numbers, {holes} holes)");
        } else {
            let _ = write!(note, "DUPLICATES: {dups} of {n}");
        }
        if let Some(f) = &self.fsync_note {
            let _ = write!(note, "; {f}");
        }
        note.push_str(&t.errors_note());
        note
    }

    /// Puts to one key; each put's number is the revision in its response header.
    pub async fn puts(&self, load: &Load) -> anyhow::Result<Row> {
        let sessions = self.sessions(load.sessions()).await?;
        let mut t = drive(
            &sessions,
            load.concurrency,
            (load.warmup, load.duration),
            self.servers.pids(),
            |kv: Kv, _end| async move {
                let r = kv
                    .put(PutRequest {
                        key: SEQ_KEY.to_vec(),
                        value: b"x".to_vec(),
                    })
                    .await?;
                let header = r.header.context("put response without header")?;
                Ok(Some(Outcome {
                    number: header.revision,
                    retries: 0,
                }))
            },
        )
        .await;
        let note = self.note(
            "put to one key, number = header revision".into(),
            &mut t,
            load,
        );
        Ok(Row::measured("etcd", &t, note))
    }

    /// A compare-and-swap counter: `txn(if value == v then put v+1 else get)`, retried
    /// with the value the failure returned. Each connection keeps its last known value.
    pub async fn cas(&self, load: &Load) -> anyhow::Result<Row> {
        let sessions: Vec<(Kv, Arc<AtomicI64>)> = self
            .sessions(load.sessions())
            .await?
            .into_iter()
            .map(|kv| (kv, Arc::new(AtomicI64::new(0))))
            .collect();
        let mut t = drive(
            &sessions,
            load.concurrency,
            (load.warmup, load.duration),
            self.servers.pids(),
            |(kv, hint): (Kv, Arc<AtomicI64>), end| async move {
                let mut v = hint.load(Ordering::Relaxed);
                let mut retries = 0;
                loop {
                    if Instant::now() >= end {
                        return Ok(None);
                    }
                    let r = kv.txn(cas_request(v)).await?;
                    if r.succeeded {
                        hint.store(v + 1, Ordering::Relaxed);
                        return Ok(Some(Outcome {
                            number: v + 1,
                            retries,
                        }));
                    }
                    retries += 1;
                    v = current_value(&r.responses)?;
                    hint.store(v, Ordering::Relaxed);
                }
            },
        )
        .await;
        let per = t.retries as f64 / (t.numbers.len().max(1)) as f64;
        let what = format!(
            "CAS counter: ops = successful increments; {} failed CAS ({per:.1} per increment)",
            t.retries
        );
        let note = self.note(what, &mut t, load);
        Ok(Row::measured("etcd-cas", &t, note))
    }
}

/// `if value(ctr) == v then put ctr v+1 else get ctr`.
pub fn cas_request(v: i64) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: COMPARE_EQUAL,
            target: TARGET_VALUE,
            key: CTR_KEY.to_vec(),
            target_union: Some(CompareTarget::Value(v.to_string().into_bytes())),
        }],
        success: vec![RequestOp {
            request: Some(Request::Put(PutRequest {
                key: CTR_KEY.to_vec(),
                value: (v + 1).to_string().into_bytes(),
            })),
        }],
        failure: vec![RequestOp {
            request: Some(Request::Range(RangeRequest {
                key: CTR_KEY.to_vec(),
            })),
        }],
    }
}

/// The counter's value from a failed transaction's range response.
pub fn current_value(responses: &[super::etcd_proto::ResponseOp]) -> anyhow::Result<i64> {
    let kv = responses
        .iter()
        .find_map(|r| match &r.response {
            Some(Response::Range(range)) => range.kvs.first(),
            _ => None,
        })
        .context("failed CAS returned no counter value")?;
    let text = std::str::from_utf8(&kv.value).context("counter value is not UTF-8")?;
    text.parse()
        .with_context(|| format!("counter value '{text}' is not a number"))
}

#[cfg(test)]
mod tests {
    use super::super::etcd_proto::{KeyValue, RangeResponse, ResponseOp};
    use super::*;

    #[test]
    fn initial_cluster_names_every_member() {
        assert_eq!(
            initial_cluster(&[2380, 2381]),
            "m0=http://127.0.0.1:2380,m1=http://127.0.0.1:2381"
        );
    }

    #[test]
    fn parses_the_version() {
        let out = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n";
        assert_eq!(parse_version(out), Some("3.4.23"));
        assert_eq!(parse_version("nothing"), None);
    }

    #[test]
    fn reads_the_counter_from_a_failed_cas() {
        let range = |value: &[u8]| ResponseOp {
            response: Some(Response::Range(RangeResponse {
                header: None,
                kvs: vec![KeyValue {
                    value: value.to_vec(),
                    ..Default::default()
                }],
            })),
        };
        assert_eq!(current_value(&[range(b"41")]).unwrap(), 41);
        assert!(current_value(&[range(b"x")]).is_err());
        assert!(current_value(&[]).is_err());
        let req = cas_request(7);
        assert_eq!(
            req.compare[0].target_union,
            Some(CompareTarget::Value(b"7".to_vec()))
        );
    }
}
