//! Metrics: the process's one registry, constructors that register into it, and the
//! small HTTP endpoint (`--metrics-listen`) that serves it in Prometheus's text format.
//!
//! Why tikv's `prometheus` crate: its metric types are plain handles (atomics behind an
//! `Arc`) that a runtime can keep in its own structs and update without a global
//! recorder or macros, it has an explicit [`Registry`] (one per process here, so tests
//! that run several roles in one process do not clash), and its `TextEncoder` writes
//! the exposition format, so none is hand-written here. Built without default features:
//! no protobuf, and no process collector (it needs the `procfs` crate): the process's
//! own CPU time and memory, under Prometheus's standard names, come from [`Process`].
//!
//! Roles update metrics from their runtimes (never inside a state machine): counters at
//! the points where a runtime already handles an event, gauges copied from the state
//! machine's own counts on a timer.
//!
//! The endpoint is read-only and unauthenticated, and built to be harmless: `GET
//! /metrics` answers 200 and the exposition; anything else 404, 405 or 400. A request is
//! at most [`MAX_REQUEST`] bytes and must arrive within [`REQUEST_TIMEOUT`]; at most
//! [`MAX_CONNS`] connections are served at once (more are closed as they come); each gets
//! one response and is closed. Nothing here shares a lock or a task with the role.

use prometheus::core::Collector;
pub use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{Encoder, HistogramOpts, Opts, TextEncoder};
pub use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};
use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The largest request the endpoint reads (its line and headers).
pub const MAX_REQUEST: usize = 8 << 10;
/// How long a connection may take to send its request and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNS: usize = 64;
/// The exposition's content type (the text format, version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds: 50 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Size buckets (ops in a batch, entries): powers of two to 4096.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// How often runtimes copy their state machines' counts into gauges.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The process's registry: every metric made here is registered in it.
pub fn registry() -> &'static Registry {
    static REG: OnceLock<Registry> = OnceLock::new();
    REG.get_or_init(|| {
        let r = Registry::new();
        if let Err(e) = r.register(Box::new(Process::new())) {
            tracing::warn!(error = %e, "process metrics not registered; not exported");
        }
        r
    })
}

/// The process's own figures, read at each scrape, under the names Prometheus's client
/// libraries give them: `process_cpu_seconds_total` (user and system time of every
/// thread, from `getrusage`), `process_resident_memory_bytes` (from `/proc/self/statm`,
/// where there is one) and `process_start_time_seconds` (Unix time, from
/// `/proc/self/stat`; where that cannot be read, when the registry was made, early in
/// `main`). `mason local` reads the first and the last at the ends of its measured window
/// to say where the run's CPU went.
pub struct Process {
    cpu: prometheus::Counter,
    rss: IntGauge,
    start: prometheus::Gauge,
    /// Serializes scrapes' updates, so that two at once do not both add the same time.
    update: Mutex<()>,
}

impl Process {
    fn new() -> Process {
        let cpu = prometheus::Counter::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent by the process, in seconds.",
        );
        let rss = IntGauge::new(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        let start = prometheus::Gauge::new(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )
        .unwrap_or_else(|_| {
            prometheus::Gauge::new("unexported", "-").expect("constant metric options are valid")
        });
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        start.set(
            crate::procstat::start_time("self")
                .unwrap_or_else(|| now.map_or(0.0, |d| d.as_secs_f64())),
        );
        Process {
            cpu: cpu.unwrap_or_else(|_| unexported_counter()),
            rss: rss.unwrap_or_else(|_| unexported_gauge()),
            start,
            update: Mutex::new(()),
        }
    }
}

fn unexported_counter() -> prometheus::Counter {
    prometheus::Counter::new("unexported", "-").expect("constant metric options are valid")
}

fn unexported_gauge() -> IntGauge {
    IntGauge::new("unexported", "-").expect("constant metric options are valid")
}

/// This process's CPU time so far (every thread's user and system time), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// This process's resident memory in bytes, where `/proc/self/statm` says.
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages.saturating_mul(if page > 0 { page as i64 } else { 4096 }))
}

impl Collector for Process {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut d = self.cpu.desc();
        d.extend(self.rss.desc());
        d.extend(self.start.desc());
        d
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        {
            let _one = self.update.lock().unwrap_or_else(|e| e.into_inner());
            let ahead = cpu_seconds() - self.cpu.get();
            if ahead > 0.0 {
                self.cpu.inc_by(ahead);
            }
            if let Some(b) = resident_bytes() {
                self.rss.set(b);
            }
        }
        let mut m = self.cpu.collect();
        m.extend(self.rss.collect());
        m.extend(self.start.collect());
        m
    }
}

/// Metrics made so far, by name: asking twice for one name (two servers in one test
/// process) gives the same handle instead of a registration error.
fn made() -> &'static Mutex<HashMap<String, Box<dyn Any + Send>>> {
    static MADE: OnceLock<Mutex<HashMap<String, Box<dyn Any + Send>>>> = OnceLock::new();
    MADE.get_or_init(Default::default)
}

/// The metric called `name`, made by `make` and registered the first time. A name asked
/// for with another type, or options the registry refuses, gives a working handle that is
/// not exported (logged): metrics never stop a role.
fn get_or_make<M>(name: &str, make: impl FnOnce() -> prometheus::Result<M>, fallback: M) -> M
where
    M: Collector + Clone + Send + 'static,
{
    let mut made = made().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = made.get(name).and_then(|b| b.downcast_ref::<M>()) {
        return m.clone();
    }
    let m = match make() {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(metric = name, error = %e, "metric not made; not exported");
            return fallback;
        }
    };
    if let Err(e) = registry().register(Box::new(m.clone())) {
        tracing::warn!(metric = name, error = %e, "metric not registered; not exported");
        return m;
    }
    made.insert(name.to_string(), Box::new(m.clone()));
    m
}

pub fn counter(name: &str, help: &str) -> IntCounter {
    get_or_make(
        name,
        || IntCounter::new(name, help),
        IntCounter::new("unexported", "-").expect("constant metric options are valid"),
    )
}

pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    get_or_make(
        name,
        || IntCounterVec::new(Opts::new(name, help), labels),
        IntCounterVec::new(Opts::new("unexported", "-"), labels)
            .expect("constant metric options are valid"),
    )
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    get_or_make(
        name,
        || IntGauge::new(name, help),
        IntGauge::new("unexported", "-").expect("constant metric options are valid"),
    )
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    get_or_make(
        name,
        || IntGaugeVec::new(Opts::new(name, help), labels),
        IntGaugeVec::new(Opts::new("unexported", "-"), labels)
            .expect("constant metric options are valid"),
    )
}

pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    get_or_make(
        name,
        || Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())),
        Histogram::with_opts(HistogramOpts::new("unexported", "-"))
            .expect("constant metric options are valid"),
    )
}

pub fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    get_or_make(
        name,
        || {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
        },
        HistogramVec::new(HistogramOpts::new("unexported", "-"), labels)
            .expect("constant metric options are valid"),
    )
}

/// Advances a counter that mirrors a monotone count kept elsewhere to `total` (never
/// back: a count that restarted lower leaves the counter where it was).
pub fn advance(c: &IntCounter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

/// Events waiting in a bounded inbox (0 once it is gone): a queue depth gauge's value.
pub fn queued<T>(inbox: &tokio::sync::mpsc::WeakSender<T>) -> i64 {
    inbox.upgrade().map_or(0, |tx| {
        i64::try_from(tx.max_capacity().saturating_sub(tx.capacity())).unwrap_or(i64::MAX)
    })
}

/// Whether a runtime's periodic sample is due at `now` (µs); if so, sets the next one.
pub fn due(next: &mut u64, now: u64) -> bool {
    if now < *next {
        return false;
    }
    *next = now + u64::try_from(SAMPLE_EVERY.as_micros()).unwrap_or(u64::MAX);
    true
}

/// The registry in the text format.
pub fn encode(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "encoding the metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Binds `addr` and serves the process registry there on the current tokio runtime, in
/// the background. Returns the bound address.
pub async fn start(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener, registry().clone()));
    tracing::info!(metrics = %bound, "metrics served at http://{bound}/metrics");
    Ok(bound)
}

/// Serves `registry` on `listener` forever.
pub async fn serve(listener: TcpListener, registry: Registry) {
    let slots = Arc::new(Semaphore::new(MAX_CONNS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // Dropped: closed at once.
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &registry)).await;
        });
    }
}

/// What a request asks for, from its head (request line and headers).
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    Metrics,
    NotFound,
    BadMethod,
    Bad,
}

fn parse_head(head: &[u8]) -> Asked {
    let Some(line) = head.split(|b| *b == b'\n').next() else {
        return Asked::Bad;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Asked::Bad;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Asked::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Asked::Bad;
    }
    if method != "GET" {
        return Asked::BadMethod;
    }
    match target.split('?').next() {
        Some("/metrics") => Asked::Metrics,
        _ => Asked::NotFound,
    }
}

/// Reads one request head (at most `MAX_REQUEST` bytes), answers it, and closes.
async fn answer(mut s: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let asked = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break parse_head(&head);
        }
        if head.len() > MAX_REQUEST {
            break Asked::Bad;
        }
    };
    let (status, ctype, body) = match asked {
        Asked::Metrics => ("200 OK", CONTENT_TYPE, encode(registry)),
        Asked::NotFound => ("404 Not Found", "text/plain", "not found\n".to_string()),
        Asked::BadMethod => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
        Asked::Bad => ("400 Bad Request", "text/plain", "bad request\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(reply.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported_cpu() -> f64 {
        let text = encode(registry());
        text.lines()
            .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("process_cpu_seconds_total exported")
    }

    #[test]
    fn the_process_cpu_time_exported_is_the_kernels_and_moves_with_work() {
        let before = exported_cpu();
        // Burn 300 ms of CPU (however long the machine takes to give it).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut x = 0u64;
        while cpu_seconds() < before + 0.3 && std::time::Instant::now() < deadline {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        // The kernel's own account (in ticks of 10 ms), apart from `getrusage`.
        let stat = || crate::procstat::cpu_seconds("self").expect("/proc/self/stat");
        let low = stat();
        let after = exported_cpu();
        let high = stat();
        assert!(
            after - before >= 0.29,
            "{before} -> {after} over 300 ms of work"
        );
        assert!(
            after >= low - 0.02 && after <= high + 0.02,
            "exported {after}, /proc/self/stat {low}..{high}"
        );
        let started = encode(registry())
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("process_start_time_seconds exported");
        assert_eq!(Some(started), crate::procstat::start_time("self"));
        let rss = encode(registry())
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("process_resident_memory_bytes exported");
        assert!(rss > 1e6, "{rss} bytes resident");
    }

    #[test]
    fn heads() {
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\n\r\n"), Asked::Metrics);
        assert_eq!(
            parse_head(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Asked::Metrics
        );
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\n\r\n"), Asked::NotFound);
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Asked::BadMethod
        );
        assert_eq!(parse_head(b"GET /metrics\r\n\r\n"), Asked::Bad);
        assert_eq!(parse_head(b"\xff\xfe garbage\r\n\r\n"), Asked::Bad);
    }

    #[test]
    fn same_name_same_handle_and_advance() {
        let a = counter("mason_test_same_total", "test");
        let b = counter("mason_test_same_total", "test");
        a.inc();
        assert_eq!(b.get(), 1);
        advance(&b, 5);
        advance(&b, 3);
        assert_eq!(a.get(), 5);
        assert!(encode(registry()).contains("mason_test_same_total 5"));
    }

    async fn ask(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let _ = s.write_all(req).await;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    /// Garbage, an oversized head and idle connections do not stop a good scrape.
    #[tokio::test]
    async fn endpoint_survives_bad_input() {
        let reg = Registry::new();
        let c = IntCounter::new("mason_test_requests_total", "test").expect("counter");
        reg.register(Box::new(c.clone())).expect("register");
        c.inc_by(7);
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(serve(l, reg));
        // Every slot held by an idle connection: one more is closed unanswered.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        assert_eq!(ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await, "");
        // Idle ones keep their slot for at most REQUEST_TIMEOUT; closed ones free it.
        drop(idle.split_off(8));
        let mut ok = String::new();
        for _ in 0..200 {
            ok = ask(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            if !ok.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ask(addr, b"\x00\x01garbage\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 400"));
        let big = vec![b'a'; MAX_REQUEST * 2];
        assert!(ask(addr, &big).await.starts_with("HTTP/1.1 400"));
        assert!(ask(addr, b"GET /x HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        let ok = ask(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE));
        assert!(ok.contains("mason_test_requests_total 7"), "{ok}");
    }
}
