//! Live figures for a run's progress bar: every second, the client processes' metrics
//! endpoints (`mason client --metrics-listen`) are scraped, and the last second's ops/s
//! (the answered-ops counter's increase) and p99 latency (the latency histogram's bucket
//! increases, interpolated as Prometheus' `histogram_quantile` does), summed over the
//! clients, become one short line. The computation from two scrapes is a pure function.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The answered-ops counter (`result="answered"`) and the latency histogram.
const OPS: &str = "mason_client_ops_total";
const LATENCY: &str = "mason_client_op_latency_seconds_bucket";
/// The largest exposition read from one client.
const MAX_BODY: u64 = 1 << 20;
/// How long one scrape may take.
const TIMEOUT: Duration = Duration::from_millis(500);

/// What one scrape of one client says.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// Answered ops so far.
    pub answered: f64,
    /// The latency histogram: (upper bound in seconds, cumulative count), ascending, the
    /// last `+Inf`.
    pub buckets: Vec<(f64, f64)>,
}

/// The value of `le="..."` in a sample's labels.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// Reads the answered-ops counter and the latency buckets from Prometheus' text format;
/// `None` when the counter is missing.
pub fn parse(text: &str) -> Option<Scrape> {
    let mut answered = None;
    let mut buckets = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if name == OPS && label(labels, "result") == Some("answered") {
            answered = Some(value);
        } else if name == LATENCY {
            let le = match label(labels, "le") {
                Some("+Inf") => f64::INFINITY,
                Some(x) => match x.parse() {
                    Ok(x) => x,
                    Err(_) => continue,
                },
                None => continue,
            };
            buckets.push((le, value));
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(Scrape {
        answered: answered?,
        buckets,
    })
}

/// `GET /metrics` from `addr`, its body (at most 1 MiB, within `TIMEOUT` per step).
pub fn fetch(addr: SocketAddr) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: mason\r\n\r\n")?;
    let mut buf = Vec::new();
    s.take(MAX_BODY).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{addr}: no end of headers"))?;
    let status = head.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "{addr}: {status}"
    );
    Ok(body.to_string())
}

/// The `q` quantile of a cumulative histogram, as Prometheus' `histogram_quantile`: the
/// bucket holding rank `q * total`, interpolated linearly within it (from 0 in the first
/// bucket); a rank in the `+Inf` bucket gives the highest finite bound. `None` when the
/// histogram holds nothing.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, cum) in buckets {
        // Counts scraped at slightly different moments can dip: keep them monotone.
        let cum = cum.max(below);
        if cum >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            if cum == below {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below) / (cum - below));
        }
        (lower, below) = (le, cum);
    }
    Some(lower)
}

/// The last window's figures over every client.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub ops_per_s: f64,
    /// Seconds; `None` when no op was answered in the window.
    pub p99: Option<f64>,
    /// Clients scraped at both ends of the window.
    pub clients: usize,
}

/// What happened between two scrapes of the same clients (`prev[i]` and `cur[i]` are
/// client i's; `None`: that scrape failed) over `secs` seconds. A client counts only when
/// both scrapes answered; one whose counts went down restarted, and its counts since the
/// restart are the window's.
pub fn window(prev: &[Option<Scrape>], cur: &[Option<Scrape>], secs: f64) -> Window {
    let mut ops = 0.0;
    let mut hist: Vec<(f64, f64)> = Vec::new();
    let mut clients = 0;
    for (p, c) in prev.iter().zip(cur) {
        let (Some(p), Some(c)) = (p, c) else {
            continue;
        };
        clients += 1;
        let same_shape = p.buckets.len() == c.buckets.len()
            && p.buckets.iter().zip(&c.buckets).all(|(a, b)| a.0 == b.0);
        let reset = c.answered < p.answered
            || (same_shape && p.buckets.iter().zip(&c.buckets).any(|(a, b)| b.1 < a.1));
        ops += if reset {
            c.answered
        } else {
            c.answered - p.answered
        };
        let delta: Vec<(f64, f64)> = if reset || !same_shape {
            c.buckets.clone()
        } else {
            p.buckets
                .iter()
                .zip(&c.buckets)
                .map(|(a, b)| (b.0, b.1 - a.1))
                .collect()
        };
        if hist.is_empty() {
            hist = delta;
        } else if hist.len() == delta.len() && hist.iter().zip(&delta).all(|(a, b)| a.0 == b.0) {
            for (h, d) in hist.iter_mut().zip(&delta) {
                h.1 += d.1;
            }
        }
    }
    Window {
        ops_per_s: if secs > 0.0 { ops / secs } else { 0.0 },
        p99: quantile(0.99, &hist),
        clients,
    }
}

impl Window {
    /// `12345 ops/s, p99 4.1 ms` for the bar.
    pub fn text(&self) -> String {
        if self.clients == 0 {
            return "no client metrics yet".into();
        }
        match self.p99 {
            Some(p) => format!("{:.0} ops/s, p99 {:.2} ms", self.ops_per_s, p * 1e3),
            None => format!("{:.0} ops/s, p99 -", self.ops_per_s),
        }
    }
}

/// Scrapes `addrs` once a second on its own thread until dropped; [`Live::text`] is the
/// latest window's line (empty before the second scrape).
pub struct Live {
    text: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Live {
    pub fn start(addrs: Vec<SocketAddr>) -> Live {
        let text = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (text.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut prev: Option<(Instant, Vec<Option<Scrape>>)> = None;
            while !s.load(Ordering::Relaxed) {
                let at = Instant::now();
                let cur = scrape_all(&addrs);
                if let Some((then, p)) = &prev {
                    let w = window(p, &cur, at.duration_since(*then).as_secs_f64());
                    *t.lock().unwrap_or_else(|e| e.into_inner()) = w.text();
                }
                prev = Some((at, cur));
                let next = at + Duration::from_secs(1);
                while !s.load(Ordering::Relaxed) && Instant::now() < next {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Live {
            text,
            stop,
            thread: Some(thread),
        }
    }

    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A run's progress bar on stderr (drawn only on a terminal): the phase (warm-up, then
/// measuring, then draining) and the live figures.
pub struct Bar {
    bar: indicatif::ProgressBar,
    live: Live,
    warmup: Duration,
    total: Duration,
}

impl Bar {
    pub fn start(metrics: Vec<SocketAddr>, warmup: Duration, duration: Duration) -> Bar {
        let total = warmup + duration;
        let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Bar {
            bar,
            live: Live::start(metrics),
            warmup,
            total,
        }
    }

    /// Shows time `t` since the load started.
    pub fn tick(&self, t: Duration) {
        self.bar.set_position(t.min(self.total).as_millis() as u64);
        let phase = if t < self.warmup {
            "warm-up"
        } else if t < self.total {
            "measuring"
        } else {
            "draining"
        };
        self.bar
            .set_message(format!("{phase} {}", self.live.text()));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Every client at once, each within its timeout.
fn scrape_all(addrs: &[SocketAddr]) -> Vec<Option<Scrape>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = addrs
            .iter()
            .map(|a| s.spawn(move || fetch(*a).ok().and_then(|t| parse(&t))))
            .collect();
        hs.into_iter().map(|h| h.join().ok().flatten()).collect()
    })
}

/// The address a process's arguments give its metrics endpoint.
pub fn metrics_of(args: &[String]) -> Option<SocketAddr> {
    let i = args.iter().position(|x| x == "--metrics-listen")?;
    args.get(i + 1).and_then(|a| a.parse().ok())
}

#[cfg(test)]
mod tests;
