//! `mason experiment` end to end through real SSH: a 6-machine cluster on this host
//! (network namespaces, each with its own address and sshd, made by
//! scripts/netns-cluster.sh): 2 sequencers, 3 proxies, 1 client, 3 servers (ZK-Mason's
//! shard servers; the other systems leave them unused).
//! - `setup parse-list` asks every machine over SSH and writes the same machine_info.txt
//!   the cluster script wrote;
//! - a short run with the leader of group 0 SIGKILLed passes every check, recovers, and
//!   leaves its results and nothing running;
//! - RSMKeeper and ZK-Mason runs start a ZooKeeper front end on the client machine, at the
//!   address they print and write to summary.txt, and it answers `ruok` with `imok`;
//! - every process of a run has a metrics endpoint, listed in summary.txt and config.json;
//!   a proxy's, scraped during the RSMKeeper run at its address in metrics.txt, parses;
//! - a launcher stopped by SIGTERM stops everything; one killed by SIGKILL leaves
//!   processes that `--only-kill-zombies` kills;
//! - a role that cannot start, and a machine that cannot be reached, fail the run with
//!   the machine named and nothing left running.
//!
//! Needs root (namespaces) and openssh-server, as CI has; MASON_SKIP_NETNS=1 skips it.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "mtest";
const SUBNET: &str = "10.213.99";

fn mason() -> &'static str {
    env!("CARGO_BIN_EXE_mason")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/netns-cluster.sh")
}

/// The namespace cluster, torn down (with everything running in it) on drop.
struct NsCluster {
    dir: PathBuf,
    remote: String,
}

impl Drop for NsCluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["down", "--prefix", PREFIX, "--dir"])
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.remote);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn out_text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl NsCluster {
    fn up() -> NsCluster {
        let dir = std::env::temp_dir().join(format!("mason-netns-test-{}", std::process::id()));
        let remote = format!("/tmp/mason-rs-test-{}", std::process::id());
        // A cluster left by a test that was itself killed.
        let _ = Command::new(script())
            .args(["down", "--prefix", PREFIX])
            .status();
        let o = Command::new(script())
            .args(["up", "--prefix", PREFIX, "--subnet", SUBNET, "--dir"])
            .arg(&dir)
            .args([
                "--machines",
                "sequencer-1,sequencer-2,proxy-1,proxy-2,proxy-3,client-1,server-1,server-2,server-3",
            ])
            .output()
            .expect("running netns-cluster.sh");
        let c = NsCluster { dir, remote };
        assert!(o.status.success(), "cluster up failed: {}", out_text(&o));
        c
    }

    /// `mason experiment run` with this cluster's machines, SSH config and remote dir.
    fn run_cmd(&self, machine_info: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(mason());
        c.args(["experiment", "run", "--machine-info"])
            .arg(machine_info)
            .arg("--ssh-config")
            .arg(self.dir.join("ssh_config"))
            .args(["--remote-dir", &self.remote, "--results"])
            .arg(self.dir.join("results"))
            .args([
                "--groups",
                "2",
                "--proxy-threads",
                "1",
                "--client-threads",
                "4",
                "--concurrency",
                "8",
                "--warmup",
                "1",
                "--cooldown",
                "1",
                "--fsync",
                "off",
                "--connect-timeout",
                "3",
            ])
            .args(extra)
            .stdin(Stdio::null());
        c
    }

    /// The run's processes still alive on any machine.
    fn running(&self) -> Vec<String> {
        let o = Command::new("pgrep")
            .args(["-af", &format!("^{}/", self.remote)])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn wait_client_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !self.running().iter().any(|l| l.contains(" client ")) {
            assert!(Instant::now() < deadline, "the run's client never started");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_none_running(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.running().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            self.running().is_empty(),
            "{what}: processes left running: {:?}",
            self.running()
        );
    }
}

#[test]
fn experiment_on_a_namespace_cluster() {
    if std::env::var("MASON_SKIP_NETNS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: MASON_SKIP_NETNS=1");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test needs root for network namespaces (MASON_SKIP_NETNS=1 skips it)"
    );
    let c = NsCluster::up();
    let info = c.dir.join("machine_info.txt");

    // parse-list over SSH finds what the cluster script knows: addresses, MACs, interfaces.
    let probed = c.dir.join("probed.txt");
    let o = Command::new(mason())
        .args(["setup", "parse-list"])
        .arg(c.dir.join("machine_list.txt"))
        .arg("-o")
        .arg(&probed)
        .arg("--ssh-config")
        .arg(c.dir.join("ssh_config"))
        .output()
        .unwrap();
    assert!(o.status.success(), "parse-list: {}", out_text(&o));
    assert_eq!(
        std::fs::read_to_string(&probed).unwrap(),
        std::fs::read_to_string(&info).unwrap(),
        "parse-list over SSH disagrees with the cluster"
    );

    // A run with the leader of group 0 killed: every check passes, and it recovers.
    let o = c
        .run_cmd(
            &info,
            &["--name", "run1", "--duration", "4", "--kill-leader", "2"],
        )
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(o.status.success(), "run1: {text}");
    assert!(
        text.contains("verify: ok unique contiguous stable once fifo fenced"),
        "{text}"
    );
    assert!(text.contains("recovery: leader killed at"), "{text}");
    let res = c.dir.join("results/run1");
    for f in [
        "config.json",
        "summary.txt",
        "client-0.dat",
        "client-0.hist",
        "recovery/contig.csv",
        "recovery/recovery.svg",
        "machines/proxy-1/logs/proxy.log",
        "machines/sequencer-2/logs/sequencer.log",
        "machines/client-1/logs/client.log",
    ] {
        assert!(res.join(f).exists(), "{f} missing from {}", res.display());
    }
    let config = std::fs::read_to_string(res.join("config.json")).unwrap();
    assert!(config.contains("\"groups\": 2") && config.contains("proxy triple 0 replica 2"));
    // The run's key went to every machine with the binary, readable by its owner only.
    let key = std::fs::read_to_string(res.join("cluster.key")).unwrap();
    for m in ["sequencer-1", "proxy-2", "client-1"] {
        use std::os::unix::fs::PermissionsExt;
        let p = Path::new(&c.remote).join(m).join("cluster.key");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), key, "{}", p.display());
    }
    c.wait_none_running("after run1");
    // `experiment results` gives the run's aggregate line again.
    let o = Command::new(mason())
        .args(["experiment", "results"])
        .arg(&res)
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(res.join("summary.txt")).unwrap();
    let agg = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success() && summary.contains(&agg),
        "results: {agg} vs {summary}"
    );

    // RSMKeeper on the same machines (its proxies only; no sequencer), with its leader
    // killed: the ZooKeeper verdict holds across machines. Its ZooKeeper front end on the
    // client machine (client-1 is machine 6) answers `ruok` while the run lasts.
    let client_1 = format!("{SUBNET}.16:2181");
    let (o, answers, proxy_metrics) = run_asking_ruok(c.run_cmd(
        &info,
        &[
            "--name",
            "zk1",
            "--system",
            "rsmkeeper",
            "--duration",
            "3",
            "--znodes",
            "16",
            "--kill-leader",
            "1.5",
        ],
    ));
    let text = out_text(&o);
    assert!(o.status.success(), "zk1: {text}");
    check_metrics(&c.dir.join("results/zk1"), proxy_metrics);
    assert!(text.contains("verify: ok linearizable"), "{text}");
    assert!(text.contains("trees agree replicas=2"), "{text}");
    check_front_ends(&text, &c.dir.join("results/zk1"), &answers, &client_1);
    c.wait_none_running("after zk1");

    // ZK-Mason: one shard on the three server machines, its proxy leader killed; its
    // front end on another port.
    let (o, answers, _) = run_asking_ruok(c.run_cmd(
        &info,
        &[
            "--name",
            "zkm1",
            "--system",
            "zkmason",
            "--zk-shards",
            "1",
            "--duration",
            "3",
            "--znodes",
            "16",
            "--kill-leader",
            "1.5",
            "--zk-gateway-port",
            "12181",
        ],
    ));
    let text = out_text(&o);
    assert!(o.status.success(), "zkm1: {text}");
    assert!(text.contains("verify: ok linearizable"), "{text}");
    assert!(text.contains("trees agree shards=1 servers=3"), "{text}");
    check_front_ends(
        &text,
        &c.dir.join("results/zkm1"),
        &answers,
        &format!("{SUBNET}.16:12181"),
    );
    c.wait_none_running("after zkm1");

    // A suite: two points, one trial each, the CSV and the plots.
    let mut suite = c.run_cmd(&info, &["--duration", "1"]);
    suite.args([
        "--spaces-list",
        "2",
        "--groups-list",
        "1",
        "--concurrency-list",
        "1,4",
    ]);
    suite.args(["--trials", "1", "--suite-name", "suite1"]);
    // `experiment suite` takes every flag of `run` after its own.
    let argv: Vec<String> = suite
        .get_args()
        .map(|a| a.to_string_lossy().into())
        .collect();
    let o = Command::new(mason())
        .arg("experiment")
        .arg("suite")
        .args(&argv[2..])
        .output()
        .unwrap();
    assert!(o.status.success(), "suite: {}", out_text(&o));
    let csv = std::fs::read_to_string(c.dir.join("results/suite1/suite.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for (row, conc) in rows.iter().zip(["1", "4"]) {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(&f[..4], ["2", "1", conc, "1"], "{csv}");
        assert!(f[4].parse::<f64>().unwrap() > 0.0, "{csv}");
    }
    assert!(c.dir.join("results/suite1/tput-latency.svg").exists());
    assert!(c
        .dir
        .join("results/suite1/s2-g1-c4-t0/summary.txt")
        .exists());
    c.wait_none_running("after the suite");

    // A launcher stopped by SIGTERM mid-run stops every process it started.
    let mut launcher = KillOnDrop(
        c.run_cmd(&info, &["--name", "run-term", "--duration", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    c.wait_client_running();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(launcher.0.id() as i32, libc::SIGTERM) };
    let status = launcher.0.wait().unwrap();
    assert!(!status.success(), "a stopped run must not succeed");
    c.wait_none_running("after SIGTERM to the launcher");

    // A launcher killed mid-run leaves its processes; --only-kill-zombies ends them.
    let launcher = c
        .run_cmd(&info, &["--name", "run2", "--duration", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut launcher = KillOnDrop(launcher);
    c.wait_client_running();
    // SIGKILL: the launcher gets no chance to clean up.
    launcher.0.kill().unwrap();
    let _ = launcher.0.wait();
    assert!(c.running().len() >= 6, "left: {:?}", c.running());
    let o = c.run_cmd(&info, &["--only-kill-zombies"]).output().unwrap();
    assert!(o.status.success(), "only-kill-zombies: {}", out_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("proxy-2: killed"),
        "{}",
        out_text(&o)
    );
    c.wait_none_running("after --only-kill-zombies");

    // A proxy that cannot bind its port: the run fails naming it, and stops the others.
    let squatter = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{PREFIX}-5"),
            mason(),
            "sequencer",
        ])
        .args(["--listen", &format!("{SUBNET}.15:7001"), "--insecure"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut squatter = KillOnDrop(squatter);
    let o = c
        .run_cmd(&info, &["--name", "run3", "--duration", "2"])
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(!o.status.success(), "run3 should fail: {text}");
    assert!(
        text.contains("proxy-3") && text.contains("Address already in use"),
        "{text}"
    );
    c.wait_none_running("after a failed start");
    let _ = squatter.0.kill();

    // A machine nobody answers at: named, and nothing launched anywhere.
    let mut lines = std::fs::read_to_string(&info).unwrap();
    lines.push_str(&format!(
        "client-2,none,eth0,-,{SUBNET}.200,{SUBNET}.200,eth0\n"
    ));
    let bad = c.dir.join("with-unreachable.txt");
    std::fs::write(&bad, lines).unwrap();
    let o = c
        .run_cmd(&bad, &["--name", "run4", "--duration", "2"])
        .output()
        .unwrap();
    let text = out_text(&o);
    assert!(!o.status.success(), "run4 should fail: {text}");
    assert!(
        text.contains("client-2") && text.contains("nothing was launched"),
        "{text}"
    );
    assert!(c.running().is_empty(), "{:?}", c.running());
}

/// A ZooKeeper four-letter word: connect, send it, read the answer until the server
/// closes (bounded by timeouts).
fn four_letter(addr: SocketAddr, word: &str) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(word.as_bytes())
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    Ok(out)
}

const FRONT_ENDS: &str = "zookeeper front ends: ";

/// A front end's address and its answer to a four-letter word (or why there is none).
type Answer = (String, Result<String, String>);

/// One `GET /metrics` at `addr` (bounded by timeouts): the body of a 200 answer.
fn get_metrics(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut out = String::new();
    s.take(16 << 20)
        .read_to_string(&mut out)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("{addr} answered: {out:.200}")),
    }
}

/// The address `metrics <name> http://ADDR/metrics` gives `name` in `text`.
fn metrics_addr(text: &str, name: &str) -> Option<SocketAddr> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(&format!("metrics {name} http://"))?;
        rest.strip_suffix("/metrics")?.parse().ok()
    })
}

/// What a run's first proxy's metrics endpoint answered while the run went on: its
/// address in the run's metrics.txt and its exposition (or why there is none).
type ProxyScrape = Result<(SocketAddr, String), String>;

/// Runs `cmd` (an `experiment run` of a ZooKeeper system) and, as soon as it prints where
/// its ZooKeeper front ends listen, asks each `ruok` while the run goes on, and scrapes
/// the first proxy's metrics endpoint at the address the run's metrics.txt lists. Returns
/// the run's output, per front end its address and answer (or why there is none), and
/// the scrape.
fn run_asking_ruok(mut cmd: Command) -> (Output, Vec<Answer>, ProxyScrape) {
    let results = {
        let argv: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into()).collect();
        let after = |f: &str| {
            argv.windows(2)
                .find(|w| w[0] == f)
                .map(|w| w[1].clone())
                .unwrap_or_default()
        };
        Path::new(&after("--results")).join(after("--name"))
    };
    let mut proxy_metrics: ProxyScrape = Err("the front ends' line never came".into());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut stdout = child.0.stdout.take().unwrap();
    let stderr = child.0.stderr.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err_thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            all.extend_from_slice(line.as_bytes());
            all.push(b'\n');
        }
        all
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut answers = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        let Some(list) = line.split(FRONT_ENDS).nth(1) else {
            continue;
        };
        let list = list.split_whitespace().next().unwrap_or("");
        for a in list.split(',') {
            let answer = a
                .parse::<SocketAddr>()
                .map_err(|e| format!("'{a}': {e}"))
                .and_then(|addr| four_letter(addr, "ruok"));
            answers.push((a.to_string(), answer));
        }
        proxy_metrics = std::fs::read_to_string(results.join("metrics.txt"))
            .map_err(|e| format!("metrics.txt: {e}"))
            .and_then(|t| metrics_addr(&t, "proxy-t0-r0").ok_or(format!("no proxy in: {t}")))
            .and_then(|addr| Ok((addr, get_metrics(addr)?)));
        break;
    }
    // Drained, so that the run never blocks on a full pipe.
    let drain = std::thread::spawn(move || rx.into_iter().count());
    let wait_until = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < wait_until,
            "the run did not end within 120 s of its front ends' line"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = Output {
        status,
        stdout: out_thread.join().unwrap(),
        stderr: err_thread.join().unwrap(),
    };
    let _ = drain.join();
    (output, answers, proxy_metrics)
}

/// Checks a run on the namespace cluster (RSMKeeper: 3 proxies, a front end and a client)
/// lists every process's metrics endpoint in summary.txt and config.json, on its
/// machine's address, and that the first proxy's endpoint, scraped during the run,
/// answered an exposition that parses with the proxy's metrics in it.
fn check_metrics(res: &Path, proxy: ProxyScrape) {
    let summary = std::fs::read_to_string(res.join("summary.txt")).unwrap();
    let config = std::fs::read_to_string(res.join("config.json")).unwrap();
    for (name, addr) in [
        ("proxy-t0-r0", format!("{SUBNET}.13:7101")),
        ("proxy-t0-r1", format!("{SUBNET}.14:7101")),
        ("proxy-t0-r2", format!("{SUBNET}.15:7101")),
        ("zk-gateway-0", format!("{SUBNET}.16:7104")),
        ("client-0", format!("{SUBNET}.16:7105")),
    ] {
        let url = format!("http://{addr}/metrics");
        assert!(
            summary
                .lines()
                .any(|l| l == format!("metrics {name} {url}")),
            "{name} {url} not in {summary}"
        );
        assert!(
            config.contains(&format!("\"metrics\": \"{url}\"")),
            "{config}"
        );
        // Its CPU over the measured window, read from that endpoint at both ends (the
        // leader this run kills reads as restarted: `-`).
        let cpu = summary
            .lines()
            .find_map(|l| l.strip_prefix(&format!("cpu {name} ")))
            .unwrap_or_else(|| panic!("no cpu line for {name} in {summary}"));
        if name.starts_with("proxy") && cpu.starts_with("- ") {
            continue;
        }
        let cores: f64 = cpu
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("cpu {name} {cpu}"));
        // The client and its front end carry the whole load; a follower proxy of a small
        // load may round to 0.00.
        let least = if name.starts_with("proxy") {
            0.0
        } else {
            0.005
        };
        assert!(cores >= least && cores < 64.0, "cpu {name} {cpu}");
    }
    assert!(
        summary.lines().any(|l| l.starts_with("cpu all ")),
        "{summary}"
    );
    let (addr, body) = proxy.unwrap_or_else(|e| panic!("scraping the proxy: {e}"));
    assert_eq!(addr, format!("{SUBNET}.13:7101").parse().unwrap());
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
    let has = |name: &str| scrape.samples.iter().any(|s| s.metric == name);
    assert!(
        has("mason_proxy_raft_term") && has("mason_connections_open"),
        "{body}"
    );
}

/// Checks a ZooKeeper run's front ends: the line in its output and in summary.txt names
/// `want` (the client machine's address and port), and each answered `imok` meanwhile.
fn check_front_ends(text: &str, res: &Path, answers: &[Answer], want: &str) {
    let line = format!("{FRONT_ENDS}{want}");
    assert!(text.contains(&line), "{line} not in: {text}");
    let summary = std::fs::read_to_string(res.join("summary.txt")).unwrap();
    assert!(summary.lines().any(|l| l == line), "{summary}");
    assert_eq!(answers.len(), 1, "{answers:?}; {text}");
    assert_eq!(answers[0].0, want);
    assert_eq!(answers[0].1.as_deref(), Ok("imok"), "{text}");
    assert!(
        res.join("machines/client-1/logs/zk-gateway.log").exists(),
        "the front end's log was not collected"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
