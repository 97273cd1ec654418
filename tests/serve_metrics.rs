//! `mason local --serve` gives each ZooKeeper front end a metrics port, as it gives the
//! cluster's other roles: stdout's first line stays exactly `serving zookeeper on ...`,
//! stderr lists `metrics zk-gateway-N http://ADDR/metrics` beside the other roles'
//! (metrics.txt too), on loopback, each front end's own; each answers while it serves
//! with an exposition that parses and has the front end's metrics in it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child (it is its leader).
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// One `GET /metrics` at `addr`: the body of a 200 answer.
fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.take(16 << 20).read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// `metrics <role> http://ADDR/metrics` lines: (role, ADDR).
fn metrics_lines(text: &str) -> Vec<(String, SocketAddr)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("metrics ")?;
            let (role, url) = rest.split_once(' ')?;
            let addr = url.strip_prefix("http://")?.strip_suffix("/metrics")?;
            Some((role.to_string(), addr.parse().ok()?))
        })
        .collect()
}

#[test]
fn serve_lists_each_front_ends_metrics_on_stderr() {
    let out = std::env::temp_dir().join(format!("mason-serve-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let child = Command::new(env!("CARGO_BIN_EXE_mason"))
        .args([
            "local",
            "--system",
            "rsmkeeper",
            "--serve",
            "--gateways",
            "2",
        ])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting mason local --serve");
    let mut child = Stop(child);
    let stdout = child.0.stdout.take().unwrap();
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send((true, l));
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send((false, l));
        }
    });
    // Until the stderr line that follows the metrics lines' block is past: stdout's first
    // line, and every stderr line up to the last metrics line (they come together, after
    // "stop with ^C").
    let (mut first, mut err) = (None::<String>, String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = first.is_some()
            && err.contains("stop with ^C")
            && metrics_lines(&err)
                .iter()
                .filter(|(r, _)| r.starts_with("zk-gateway-"))
                .count()
                == 2;
        if done {
            break;
        }
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("no serving lines within 60 s: {first:?}\n{err}"));
        match rx.recv_timeout(left) {
            Ok((true, l)) => {
                first.get_or_insert(l);
            }
            Ok((false, l)) => {
                err.push_str(&l);
                err.push('\n');
            }
            Err(_) => panic!("mason local --serve ended or hung: {first:?}\n{err}"),
        }
    }
    let first = first.unwrap();
    let served = first
        .strip_prefix("serving zookeeper on ")
        .unwrap_or_else(|| panic!("stdout's first line: {first}"));
    assert_eq!(served.split(',').count(), 2, "{first}");
    assert!(!first.contains("metrics"), "{first}");
    let listed = metrics_lines(&err);
    let gateways: Vec<&(String, SocketAddr)> = listed
        .iter()
        .filter(|(r, _)| r.starts_with("zk-gateway-"))
        .collect();
    assert_eq!(
        gateways.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["zk-gateway-0", "zk-gateway-1"],
        "{err}"
    );
    // The cluster's other roles too (RSMKeeper: its three proxies), each on its own port.
    assert!(listed.iter().any(|(r, _)| r == "proxy-0"), "{err}");
    let mut addrs: Vec<SocketAddr> = listed.iter().map(|(_, a)| *a).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), listed.len(), "{err}");
    let metrics_txt = std::fs::read_to_string(out.join("metrics.txt")).unwrap();
    assert_eq!(metrics_lines(&metrics_txt), listed, "{metrics_txt}");
    for (role, addr) in gateways {
        assert!(addr.ip().is_loopback(), "{role} {addr}");
        assert!(
            !served.split(',').any(|s| s == addr.to_string()),
            "{role}'s metrics on its ZooKeeper port"
        );
        let body = scrape(*addr);
        let lines = body.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
        assert!(
            parsed
                .samples
                .iter()
                .any(|s| s.metric.starts_with("mason_zk_gateway_")),
            "{role}: {body}"
        );
    }
    // SIGTERM: it stops everything and exits 0.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "not stopped 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}\n{err}");
    let _ = std::fs::remove_dir_all(&out);
}
