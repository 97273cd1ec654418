//! What the kernel says about a process (`/proc/<pid>/stat`: its CPU time, its parent,
//! when it started), and reading something at both ends of a load's measured window. Used
//! by the metrics' process figures, by `mason local` and `mason experiment run` (where
//! each process's CPU went) and by `mason experiment peers` (the servers' CPU per op).

use std::time::{Duration, Instant};

/// The fields of `/proc/<pid>/stat` after the command's name (which is in parentheses and
/// may hold spaces): the first is field 3 of the line, the state. `pid` is a number or
/// `self`.
pub fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Field `n` (as numbered in proc(5)) of a process's stat line, as a number.
fn field(f: &[String], n: usize) -> Option<f64> {
    f.get(n.checked_sub(3)?)?.parse().ok()
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// A process's user and system time so far, every thread's, in seconds (the kernel counts
/// in clock ticks, 10 ms).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let f = stat_fields(pid)?;
    Some((field(&f, 14)? + field(&f, 15)?) / ticks_per_second())
}

/// A process's parent.
pub fn parent(pid: u32) -> Option<u32> {
    let f = stat_fields(&pid.to_string())?;
    f.get(1)?.parse().ok()
}

/// When a process started, in Unix seconds: its start in ticks after boot (field 22) plus
/// the boot time (`btime` in `/proc/stat`).
pub fn start_time(pid: &str) -> Option<f64> {
    let after_boot = field(&stat_fields(pid)?, 22)? / ticks_per_second();
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime + after_boot)
}

/// Every process descended from `pid` (its children, theirs, ...), found by each
/// process's parent in `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(pp) = parent(p) {
                    parent_of.push((p, pp));
                }
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let of = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == of)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// How far inside a measured window [`at_window_ends`] reads: a load's clients start a
/// little after it is timed from, and may stop as soon as their window ends.
pub const MARGIN: Duration = Duration::from_millis(100);

/// Calls `read` at `start + warmup + MARGIN` and at `start + warmup + duration - MARGIN`
/// (sleeping until each), and gives both results; `None` for a window shorter than three
/// margins. Each reading should carry its own time: one that reads many sources in turn
/// takes a while.
pub fn at_window_ends<T>(
    start: Instant,
    warmup: Duration,
    duration: Duration,
    mut read: impl FnMut() -> T,
) -> Option<(T, T)> {
    if duration < 3 * MARGIN {
        return None;
    }
    sleep_until(start + warmup + MARGIN);
    let a = read();
    sleep_until(start + warmup + duration - MARGIN);
    Some((a, read()))
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read_and_a_missing_one_is_not() {
        let me = std::process::id();
        assert!(cpu_seconds("self").is_some_and(|s| s >= 0.0));
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let started = start_time("self").expect("a start time");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        assert_eq!(cpu_seconds(&u32::MAX.to_string()), None);
        let child = std::process::Command::new("sleep").arg("5").spawn();
        let mut child = child.expect("sleep");
        assert!(descendants(me).contains(&child.id()));
        let _ = (child.kill(), child.wait());
    }

    #[test]
    fn a_window_is_read_inside_both_its_ends() {
        let start = Instant::now();
        let (w, d) = (Duration::from_millis(50), Duration::from_millis(400));
        let (a, b) = at_window_ends(start, w, d, Instant::now).expect("two readings");
        assert!(a >= start + w + MARGIN && b >= start + w + d - MARGIN && b > a);
        assert!(at_window_ends(start, w, 2 * MARGIN, Instant::now).is_none());
    }
}
