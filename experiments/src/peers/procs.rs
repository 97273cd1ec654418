//! Server processes for the peers benchmark: free loopback ports, finding installed
//! programs, a guard that kills the servers it started when dropped (on success, error or
//! panic alike), and how much CPU they spent over the measured window (from /proc).

use anyhow::Context;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `n` distinct loopback ports that were free a moment ago (all bound at once, so no two
/// are the same, then released for the servers to take).
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding loopback ports to pick free ones")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// The first `name` found in `$PATH`, or at one of `fallbacks`.
pub fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    in_path.or_else(|| fallbacks.iter().map(PathBuf::from).find(|p| p.is_file()))
}

/// Servers started for one system; each is killed (SIGKILL) and reaped when the guard is
/// dropped.
#[derive(Default)]
pub struct Servers {
    children: Vec<(String, Child)>,
}

impl Servers {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(&mut self, name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<()> {
        let out = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        tracing::info!(name, pid = child.id(), log = %log.display(), "started server");
        self.children.push((name.to_string(), child));
        Ok(())
    }

    /// Fails if any server has already exited (a bad config, a port taken).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("{name} exited early with {status}; see its log");
            }
        }
        Ok(())
    }
}

impl Servers {
    /// The servers' processes, and every process each started.
    pub fn pids(&self) -> Vec<u32> {
        self.children
            .iter()
            .flat_map(|(_, c)| {
                let mut v = vec![c.id()];
                v.extend(descendants(c.id()));
                v
            })
            .collect()
    }
}

/// A process's user and system time so far (every thread's), from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's name (in parentheses, which may hold spaces): fields 3 on.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15: 11 and 12 here.
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / if hz > 0 { hz as f64 } else { 100.0 })
}

/// Every process descended from `pid` (children, theirs, ...), found by each process's
/// parent in `/proc`.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat.get(i + 2..))
                .and_then(|r| r.split_whitespace().nth(1))
                .and_then(|x| x.parse::<u32>().ok());
            if let Some(pp) = ppid {
                parent_of.push((p, pp));
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

/// The CPU that a set of processes spends over a load's measured window: read at
/// `start + warmup + MARGIN` and at `start + warmup + duration - MARGIN`, on a thread of
/// its own.
pub struct CpuProbe {
    thread: JoinHandle<Option<f64>>,
}

/// How far inside the window each reading is taken.
const MARGIN: Duration = Duration::from_millis(100);

impl CpuProbe {
    pub fn start(pids: Vec<u32>, start: Instant, warmup: Duration, duration: Duration) -> CpuProbe {
        let thread = std::thread::spawn(move || {
            if pids.is_empty() || duration < 3 * MARGIN {
                return None;
            }
            let read = || {
                pids.iter()
                    .map(|p| cpu_seconds(*p))
                    .collect::<Option<Vec<f64>>>()
            };
            sleep_until(start + warmup + MARGIN);
            let t0 = Instant::now();
            let a = read()?;
            sleep_until(start + warmup + duration - MARGIN);
            let b = read()?;
            let secs = t0.elapsed().as_secs_f64().max(1e-3);
            Some(b.iter().zip(&a).map(|(b, a)| (b - a).max(0.0)).sum::<f64>() / secs)
        });
        CpuProbe { thread }
    }

    /// The cores the processes kept busy over the window (`None` where one of them could
    /// not be read at both ends: it exited, say).
    pub fn finish(self) -> Option<f64> {
        self.thread.join().ok().flatten()
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (name, child) in &mut self.children {
            if let Err(e) = child.kill() {
                tracing::warn!(name = name.as_str(), "killing server: {e}");
            }
            // Reap it, so no zombie outlives the run.
            let _ = child.wait();
        }
        if !self.children.is_empty() {
            tracing::info!(n = self.children.len(), "stopped servers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that burns CPU reads about one core busy; one that sleeps, about none; and
    /// each is found among this process's descendants.
    #[test]
    fn a_probe_reads_a_busy_process_busy_and_an_idle_one_idle() {
        let mut busy = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let mut idle = Command::new("sleep").arg("30").spawn().unwrap();
        let mine = descendants(std::process::id());
        assert!(
            mine.contains(&busy.id()) && mine.contains(&idle.id()),
            "{mine:?}"
        );
        let start = Instant::now();
        let (w, d) = (Duration::from_millis(100), Duration::from_millis(1500));
        let b = CpuProbe::start(vec![busy.id()], start, w, d);
        let i = CpuProbe::start(vec![idle.id()], start, w, d);
        let (b, i) = (b.finish(), i.finish());
        let _ = (busy.kill(), idle.kill(), busy.wait(), idle.wait());
        // The busy loop shares the machine's cores with the rest of the tests.
        let b = b.expect("read at both ends");
        assert!(b > 0.2 && b < 1.1, "busy: {b} cores");
        assert!(i.expect("read at both ends") < 0.05, "idle: {i:?} cores");
        assert_eq!(cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(9).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 9);
    }
}
