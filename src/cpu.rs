//! Where a run's CPU went (`mason local` and `mason experiment run`): every process's
//! `process_cpu_seconds_total` (and `process_start_time_seconds`, which tells a restarted
//! process) is read from its metrics endpoint just after the warm-up and just before the
//! measured window ends (all processes at once, each timed on its own), and the run's output says, per process, how many cores it kept busy and
//! how many microseconds of CPU that is per op (`cpu ROLE CORES cores US us/op`), then
//! the sum (`cpu all ...`).
//!
//! On one machine with fewer cores than processes (`mason local` on the 2-core
//! development VM), the throughput is the cores over the sum's CPU per op; with a core for
//! each process, the busiest process would bound it instead. The figures say which
//! process that is.

use mason_common::procstat;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The two readings, taken on a thread of their own so that a slow endpoint never holds
/// up the fault schedule.
pub(crate) struct Window {
    readings: JoinHandle<Option<Readings>>,
}

/// One process's reading: its CPU seconds so far, when it started, and when this was read.
type Reading = Option<(f64, f64, Instant)>;

/// Each role's reading at the window's start and end.
struct Readings {
    start: Vec<(String, Reading)>,
    end: Vec<(String, Reading)>,
}

impl Window {
    /// Reads `roles`' endpoints just inside both ends of the measured window
    /// (`started + warmup` to `started + warmup + duration`; see
    /// [`procstat::at_window_ends`]).
    pub(crate) fn start(
        roles: Vec<(String, SocketAddr)>,
        started: Instant,
        warmup: Duration,
        duration: Duration,
    ) -> Window {
        let readings = std::thread::spawn(move || {
            let (start, end) =
                procstat::at_window_ends(started, warmup, duration, || read_all(&roles))?;
            Some(Readings { start, end })
        });
        Window { readings }
    }

    /// The `cpu` lines, given the run's throughput in ops/s and, where every process ran
    /// on this machine, its cores (`None` where the readings were not taken).
    pub(crate) fn lines(self, ops_per_sec: f64, machine_cores: Option<usize>) -> Option<String> {
        let r = self.readings.join().ok()??;
        Some(r.lines(ops_per_sec, machine_cores))
    }
}

impl Readings {
    fn lines(&self, ops_per_sec: f64, machine_cores: Option<usize>) -> String {
        let per_op = |cores: f64| {
            if ops_per_sec > 0.0 {
                format!("{:.2}", cores * 1e6 / ops_per_sec)
            } else {
                "-".to_string()
            }
        };
        let mut text = String::new();
        let mut all = 0.0;
        let mut busiest: Option<(&str, f64)> = None;
        for ((role, a), (_, b)) in self.start.iter().zip(&self.end) {
            match (a, b) {
                (Some((a, born_a, at_a)), Some((b, born_b, at_b)))
                    if born_a == born_b && b >= a =>
                {
                    let secs = at_b.duration_since(*at_a).as_secs_f64().max(1e-3);
                    let cores = (b - a) / secs;
                    all += cores;
                    if busiest.is_none_or(|(_, c)| cores > c) {
                        busiest = Some((role, cores));
                    }
                    text.push_str(&format!(
                        "cpu {role} {cores:.2} cores {} us/op\n",
                        per_op(cores)
                    ));
                }
                // Restarted in the window (its count began again), or not read.
                _ => text.push_str(&format!("cpu {role} - (not read at both ends)\n")),
            }
        }
        let machine = machine_cores.map_or(String::new(), |n| format!("{n} on this machine; "));
        text.push_str(&format!(
            "cpu all {all:.2} cores {} us/op ({machine}busiest: {})\n",
            per_op(all),
            busiest.map_or("-".to_string(), |(r, c)| format!("{r} at {c:.2}")),
        ));
        text
    }
}

/// Each role's reading, or `None` where it did not answer; all at once, so that one slow
/// endpoint does not put off the others' readings.
fn read_all(roles: &[(String, SocketAddr)]) -> Vec<(String, Reading)> {
    std::thread::scope(|s| {
        let reads: Vec<_> = roles
            .iter()
            .map(|(_, addr)| {
                s.spawn(move || {
                    let text = crate::local::scrape(*addr).ok()?;
                    let at = Instant::now();
                    let (cpu, born) = reading(&text)?;
                    Some((cpu, born, at))
                })
            })
            .collect();
        roles
            .iter()
            .zip(reads)
            .map(|((role, _), r)| (role.clone(), r.join().ok().flatten()))
            .collect()
    })
}

/// `process_cpu_seconds_total` and `process_start_time_seconds` in an exposition.
fn reading(text: &str) -> Option<(f64, f64)> {
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some((
        value("process_cpu_seconds_total")?,
        value("process_start_time_seconds")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_give_each_processs_cores_and_cpu_per_op_and_their_sum() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let r = Readings {
            start: vec![
                ("sequencer".into(), Some((1.0, 7.0, t0))),
                ("proxy-0".into(), Some((2.0, 7.0, t0))),
                ("client-0".into(), Some((0.5, 7.0, t0))),
                ("proxy-1".into(), Some((0.5, 7.0, t0))),
            ],
            // proxy-1 was restarted in the window: its count began again (and passed the
            // first reading's).
            end: vec![
                ("sequencer".into(), Some((1.5, 7.0, t1))),
                ("proxy-0".into(), Some((4.0, 7.0, t1))),
                ("client-0".into(), None),
                ("proxy-1".into(), Some((0.7, 8.5, t1))),
            ],
        };
        let text = r.lines(100_000.0, Some(2));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "cpu sequencer 0.25 cores 2.50 us/op");
        assert_eq!(lines[1], "cpu proxy-0 1.00 cores 10.00 us/op");
        assert_eq!(lines[2], "cpu client-0 - (not read at both ends)");
        assert_eq!(lines[3], "cpu proxy-1 - (not read at both ends)");
        assert!(
            lines[4]
                == "cpu all 1.25 cores 12.50 us/op (2 on this machine; busiest: proxy-0 at 1.00)",
            "{}",
            lines[4]
        );
        let text = "# x\nprocess_cpu_seconds_total 3.25\nprocess_start_time_seconds 1.5e9\n";
        assert_eq!(reading(text), Some((3.25, 1.5e9)));
        assert!(r
            .lines(0.0, None)
            .ends_with("cpu all 1.25 cores - us/op (busiest: proxy-0 at 1.00)\n"));
        assert_eq!(reading("process_cpu_seconds_total 3.25\n"), None);
    }
}
