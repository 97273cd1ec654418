//! `mason local`'s metrics endpoints: every role process it starts gets
//! `--metrics-listen` on a free loopback port (the same port again when it is restarted),
//! each role still running is scraped once just before it is stopped (saved as
//! `metrics-<role>.prom`; a client saves its own final values as it exits), and
//! summary.txt lists them as `metrics <role> http://ADDR/metrics`. While the run goes,
//! `metrics.txt` in the out dir lists them the same way (rewritten as roles start).

use anyhow::Context;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The bytes a scrape reads at most.
const MAX_SCRAPE: usize = 64 << 20;

pub(super) struct Endpoints {
    /// By role name (`sequencer`, `proxy-0`, `log-1`, `zk-s0-r2`, `client-0`, ...).
    by_role: Vec<(String, SocketAddr)>,
    out: PathBuf,
}

impl Endpoints {
    pub(super) fn new(out: &Path) -> Endpoints {
        Endpoints {
            by_role: Vec::new(),
            out: out.to_path_buf(),
        }
    }

    /// `metrics <role> http://ADDR/metrics`, one line each, in the order they started.
    pub(super) fn lines(&self) -> String {
        self.by_role
            .iter()
            .map(|(role, addr)| format!("metrics {role} http://{addr}/metrics\n"))
            .collect()
    }

    /// Every role's endpoint so far, in the order they started.
    pub(super) fn roles(&self) -> Vec<(String, SocketAddr)> {
        self.by_role.clone()
    }

    /// `args` with `--metrics-listen` for `role`: its port, chosen on first use.
    pub(super) fn with(
        &mut self,
        role: &str,
        mut args: Vec<String>,
    ) -> anyhow::Result<Vec<String>> {
        let addr = match self.by_role.iter().find(|(r, _)| r == role) {
            Some((_, a)) => *a,
            None => {
                let a = super::free_addrs(1)?
                    .first()
                    .copied()
                    .context("no free loopback port for metrics")?;
                self.by_role.push((role.to_string(), a));
                let p = self.out.join("metrics.txt");
                std::fs::write(&p, self.lines())
                    .with_context(|| format!("writing {}", p.display()))?;
                a
            }
        };
        args.extend(["--metrics-listen".to_string(), addr.to_string()]);
        Ok(args)
    }

    /// Scrapes every role but the clients (gone by now: they write their own) into
    /// `out/metrics-<role>.prom`. A role that does not answer is reported, not fatal.
    pub(super) fn save_all(&self, out: &Path) {
        for (role, addr) in self
            .by_role
            .iter()
            .filter(|(r, _)| !r.starts_with("client-"))
        {
            match scrape(*addr) {
                Ok(text) => {
                    let p = out.join(format!("metrics-{role}.prom"));
                    if let Err(e) = std::fs::write(&p, text) {
                        eprintln!("mason local: writing {}: {e}", p.display());
                    }
                }
                Err(e) => eprintln!("mason local: no metrics from {role} ({addr}): {e:#}"),
            }
        }
    }

    /// Appends `metrics <role> http://ADDR/metrics` lines to summary.txt.
    pub(super) fn list_in_summary(&self, out: &Path) -> anyhow::Result<()> {
        let p = out.join("summary.txt");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .with_context(|| format!("opening {}", p.display()))?;
        f.write_all(self.lines().as_bytes())?;
        Ok(())
    }
}

/// One `GET /metrics` at `addr`: the exposition text.
pub(crate) fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    scrape_within(addr, SCRAPE_DEADLINE)
}

/// How long one scrape may take in all: connecting, asking and reading the whole answer
/// (an endpoint that answers a byte at a time cannot hold a run's end longer).
const SCRAPE_DEADLINE: Duration = Duration::from_secs(5);

fn scrape_within(addr: SocketAddr, within: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .context("the scrape's deadline passed")
    };
    let mut s = TcpStream::connect_timeout(&addr, left()?)?;
    s.set_write_timeout(Some(left()?))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: mason\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        s.set_read_timeout(Some(left()?))?;
        match s.read(&mut buf)? {
            0 => break,
            n => raw.extend_from_slice(&buf[..n]),
        }
        anyhow::ensure!(raw.len() <= MAX_SCRAPE, "an answer over {MAX_SCRAPE} bytes");
    }
    let reply = String::from_utf8(raw).context("an answer that is not UTF-8")?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .context("an answer without a header")?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "answered {}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// An endpoint on loopback that reads one request and answers `head`, then `drip`s
    /// (a byte every 20 ms, 3 s in all, unless the client goes away).
    fn endpoint(head: &'static [u8], drip: bool) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut req = [0u8; 256];
            let _ = c.read(&mut req);
            let _ = c.write_all(head);
            for _ in 0..if drip { 150 } else { 0 } {
                if c.write_all(b"#").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        (addr, server)
    }

    /// An endpoint that answers one byte at a time, each well within a read timeout, is
    /// given up on at the scrape's deadline, not read for as long as it keeps dripping.
    #[test]
    fn a_dripping_endpoint_is_given_up_at_the_deadline() {
        let (addr, server) = endpoint(b"HTTP/1.1 200 OK\r\n\r\n", true);
        let t = Instant::now();
        let r = scrape_within(addr, Duration::from_millis(300));
        let took = t.elapsed();
        assert!(r.is_err(), "a scrape past its deadline fails");
        assert!(took < Duration::from_millis(1500), "gave up after {took:?}");
        drop(r);
        let _ = server.join();
    }

    #[test]
    fn a_prompt_endpoint_is_read_whole() {
        let (addr, server) = endpoint(b"HTTP/1.1 200 OK\r\n\r\nmason_up 1\n", false);
        assert_eq!(
            scrape_within(addr, Duration::from_secs(5)).unwrap(),
            "mason_up 1\n"
        );
        let _ = server.join();
    }
}
