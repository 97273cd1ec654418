//! Server processes for the peers benchmark: free loopback ports, finding installed
//! programs, and a guard that kills the servers it started when dropped (on success,
//! error or panic alike).

use anyhow::Context;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(9).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 9);
    }
}
