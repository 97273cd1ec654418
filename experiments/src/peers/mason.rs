//! Mason and the direct baseline in the peers benchmark: runs `mason local` (this very
//! binary) as a child process with the shared load settings and reads its aggregate line.

use super::{Load, Row};
use anyhow::Context;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `aggregate-throughput 50 99 99.9 99.99` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    pub mops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    /// Ops the clients re-sent (the last field of each client line), summed.
    pub resent: u64,
}

/// Finds the values line after the `aggregate-throughput` header in `mason local`'s
/// stdout.
/// Client lines (`mrps,p50,p99,p999,p9999,num_re_tx`) before it give the re-sent count.
pub fn parse_aggregate(stdout: &str) -> anyhow::Result<Aggregate> {
    let mut lines = stdout.lines();
    let mut resent = 0;
    lines
        .by_ref()
        .inspect(|l| {
            let fields: Vec<&str> = l.trim().split(',').collect();
            if let [_, _, _, _, _, n] = fields[..] {
                resent += n.parse::<u64>().unwrap_or(0);
            }
        })
        .find(|l| l.trim_start().starts_with("aggregate-throughput"))
        .context("no 'aggregate-throughput' line in mason local's output")?;
    let values = lines
        .next()
        .context("nothing after the 'aggregate-throughput' line")?;
    let v = values
        .split_whitespace()
        .map(|w| w.parse::<f64>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad aggregate line '{values}'"))?;
    match v[..] {
        [mops, p50_us, p99_us, p999_us, p9999_us] => Ok(Aggregate {
            mops,
            p50_us,
            p99_us,
            p999_us,
            p9999_us,
            resent,
        }),
        _ => anyhow::bail!("aggregate line '{values}' has {} values, not 5", v.len()),
    }
}

/// The servers' CPU per op from `mason local`'s `cpu ROLE C cores U us/op` lines: the sum
/// of U over every role but the clients (`None` if a server was not read at both ends of
/// the window, or there are no such lines).
pub fn server_cpu_us(stdout: &str) -> Option<f64> {
    let mut sum = None;
    for l in stdout.lines().filter_map(|l| l.strip_prefix("cpu ")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        match f[..] {
            ["all", ..] => {}
            [role, ..] if role.starts_with("client-") => {}
            [_, _, "cores", us, "us/op", ..] => {
                *sum.get_or_insert(0.0) += us.parse::<f64>().ok()?
            }
            _ => return None,
        }
    }
    sum
}

/// How long `mason local` may take beyond warmup + duration (start-up, leader election,
/// writing results) before it is killed.
const MARGIN: Duration = Duration::from_secs(300);

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// Runs `mason local --system <system>` with the shared load; its stdout and stderr go
/// to `<out>/mason-<system>.log`, its result directory to a temporary one (removed after).
pub fn run(system: &str, load: &Load, out: &Path) -> anyhow::Result<Row> {
    let exe = std::env::current_exe().context("finding the mason binary")?;
    let run_dir = tempfile::Builder::new()
        .prefix(&format!("mason-peers-{system}-"))
        .tempdir()
        .context("creating a temporary directory for mason local")?;
    let log = out.join(format!("mason-{system}.log"));
    let stderr =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("local").args(["--system", system]);
    if system == "mason" {
        cmd.args(["--groups", &load.groups.to_string()]);
    }
    cmd.args(["--clients", &load.clients.to_string()])
        .args(["--client-threads", &load.client_threads.to_string()])
        .args(["--concurrency", &load.concurrency.to_string()])
        .args(["--duration", &secs(load.duration)])
        .args(["--warmup", &secs(load.warmup)])
        .args(["--verify", "off"])
        .args(["--fsync", if load.fsync { "on" } else { "off" }])
        .arg("--out")
        .arg(run_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    tracing::info!(system, ?cmd, "running mason local");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let started = Instant::now();
    // Read stdout on the side while waiting, so a hung run can be killed at a deadline.
    let mut pipe = child.stdout.take().context("mason local's stdout")?;
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut pipe, &mut buf).map(|_| buf)
    });
    let deadline = started + load.warmup + load.duration + MARGIN;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "mason local --system {system} ran past {MARGIN:?} over its duration; killed"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reading mason local's stdout panicked"))?
        .context("reading mason local's stdout")?;
    let stdout = String::from_utf8_lossy(&output);
    // Keep stdout beside stderr in the log, for whoever reads it later.
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    text.push_str("\n--- stdout ---\n");
    text.push_str(&stdout);
    std::fs::write(&log, text).with_context(|| format!("writing {}", log.display()))?;
    tracing::info!(system, secs = started.elapsed().as_secs_f64(), %status, "mason local done");
    if !status.success() {
        anyhow::bail!(
            "mason local --system {system} exited with {status}; see {}",
            log.display()
        );
    }
    let agg = parse_aggregate(&stdout)?;
    let what = if system == "direct" {
        "clients ask the sequencer directly, one request per op".to_string()
    } else {
        format!(
            "{} proxy group{} x 3 replicas, primary + backup sequencer",
            load.groups,
            if load.groups == 1 { "" } else { "s" }
        )
    };
    Ok(Row {
        system: system.to_string(),
        ops_per_s: Some(agg.mops * 1e6),
        p50_us: Some(agg.p50_us),
        p99_us: Some(agg.p99_us),
        server_cpu_us: server_cpu_us(&stdout),
        note: format!(
            "mason local: {what}; {} client procs x {} threads; p99.9 {:.0} us; {} re-sent",
            load.clients, load.client_threads, agg.p999_us, agg.resent
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_cpu_is_the_sum_over_every_role_but_the_clients() {
        let out = "verify: ok\n\
                   cpu sequencer 0.13 cores 0.67 us/op\n\
                   cpu sequencer-1 0.00 cores 0.00 us/op\n\
                   cpu proxy-0 0.49 cores 2.53 us/op\n\
                   cpu client-0 0.19 cores 0.97 us/op\n\
                   cpu all 0.81 cores 4.17 us/op (2 on this machine; busiest: proxy-0 at 0.49)\n";
        let got = server_cpu_us(out).expect("a sum");
        assert!((got - 3.20).abs() < 1e-9, "{got}");
        assert_eq!(server_cpu_us("verify: ok\n"), None);
        let restarted =
            "cpu proxy-0 - (not read at both ends)\ncpu sequencer 0.1 cores 1.0 us/op\n";
        assert_eq!(server_cpu_us(restarted), None);
    }

    #[test]
    fn parses_the_aggregate_line() {
        let out = "0.031789,1935.4,3555.3,4390.9,4657.2,3\n\
                   0.031619,1949.7,3502.1,4546.6,5615.6,4\n\
                   aggregate-throughput 50 99 99.9 99.99\n\
                   0.063408 1943.6 3526.7 4444.2 5083.1\n\
                   verify: skipped (--verify off)\n";
        let a = parse_aggregate(out).unwrap();
        assert_eq!(
            a,
            Aggregate {
                mops: 0.063408,
                p50_us: 1943.6,
                p99_us: 3526.7,
                p999_us: 4444.2,
                p9999_us: 5083.1,
                resent: 7,
            }
        );
    }

    #[test]
    fn rejects_missing_or_short_aggregates() {
        assert!(parse_aggregate("verify: ok\n").is_err());
        assert!(parse_aggregate("aggregate-throughput 50 99 99.9 99.99\n").is_err());
        assert!(parse_aggregate("aggregate-throughput 50 99 99.9 99.99\n1 2 3\n").is_err());
        assert!(parse_aggregate("aggregate-throughput 50 99 99.9 99.99\n1 x 3 4 5\n").is_err());
    }
}
