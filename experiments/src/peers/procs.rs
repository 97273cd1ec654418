//! Server processes for the peers benchmark: free loopback ports, finding installed
//! programs, a guard that kills the servers it started when dropped (on success, error or
//! panic alike), and how much CPU they spent over the measured window (from /proc).

use anyhow::Context;
use mason_common::procstat;
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
                v.extend(procstat::descendants(c.id()));
                v
            })
            .collect()
    }
}

/// The CPU that a set of processes spends over a load's measured window (read just inside
/// both its ends, on a thread of its own).
pub struct CpuProbe {
    thread: JoinHandle<Option<f64>>,
}

/// A process's CPU seconds so far, and when that was read.
fn read(pid: u32) -> Option<(f64, Instant)> {
    Some((procstat::cpu_seconds(&pid.to_string())?, Instant::now()))
}

impl CpuProbe {
    pub fn start(pids: Vec<u32>, start: Instant, warmup: Duration, duration: Duration) -> CpuProbe {
        let thread = std::thread::spawn(move || {
            let read_all = || pids.iter().map(|p| (*p, read(*p))).collect::<Vec<_>>();
            let (a, b) = procstat::at_window_ends(start, warmup, duration, read_all)?;
            let mut cores = None;
            for ((_, a), (_, b)) in a.iter().zip(&b) {
                match (a, b) {
                    // Gone before the window (a start script's short-lived helper, say):
                    // not a server.
                    (None, _) => {}
                    (Some((ca, ta)), Some((cb, tb))) => {
                        let secs = tb.duration_since(*ta).as_secs_f64().max(1e-3);
                        *cores.get_or_insert(0.0) += (cb - ca).max(0.0) / secs;
                    }
                    // Ended within the window: its share is not known.
                    (Some(_), None) => return None,
                }
            }
            cores
        });
        CpuProbe { thread }
    }

    /// The cores the processes kept busy over the window (`None` where none was running at
    /// its start, or one that was had ended by its end).
    pub fn finish(self) -> Option<f64> {
        self.thread.join().ok().flatten()
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

    /// A child that burns CPU reads about one core busy; one that sleeps, about none; each
    /// is found among this process's descendants; one that is gone is left out.
    #[test]
    fn a_probe_reads_a_busy_process_busy_and_an_idle_one_idle() {
        let mut busy = Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        let mut idle = Command::new("sleep").arg("30").spawn().unwrap();
        let mine = procstat::descendants(std::process::id());
        assert!(
            mine.contains(&busy.id()) && mine.contains(&idle.id()),
            "{mine:?}"
        );
        let start = Instant::now();
        let (w, d) = (Duration::from_millis(100), Duration::from_millis(1500));
        let b = CpuProbe::start(vec![busy.id()], start, w, d);
        let i = CpuProbe::start(vec![idle.id()], start, w, d);
        // A process gone before the window is not counted; none at all reads as nothing.
        let gone = CpuProbe::start(vec![u32::MAX, std::process::id()], start, w, d);
        let none = CpuProbe::start(vec![u32::MAX], start, w, d);
        let (b, i) = (b.finish(), i.finish());
        assert!(gone.finish().is_some());
        assert_eq!(none.finish(), None);
        let _ = (busy.kill(), idle.kill(), busy.wait(), idle.wait());
        // The busy loop shares the machine's cores with the rest of the tests.
        let b = b.expect("read at both ends");
        assert!(b > 0.2 && b < 1.1, "busy: {b} cores");
        assert!(i.expect("read at both ends") < 0.05, "idle: {i:?} cores");
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
