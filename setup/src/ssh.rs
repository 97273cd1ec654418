//! Running commands and copying files on machines with the system's `ssh` and `scp`
//! (OpenSSH), never asking for a password (`BatchMode`), with bounded connect and liveness
//! timeouts so that a dead machine fails a step instead of hanging it. Many machines are
//! served at once by [`on_all`], a bounded pool of threads.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// How to reach machines.
#[derive(Clone, Debug, Default)]
pub struct Ssh {
    /// An ssh_config file (`ssh -F`).
    pub config: Option<PathBuf>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// A private key (`ssh -i`).
    pub identity: Option<PathBuf>,
    /// Seconds to wait for a connection.
    pub connect_timeout: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{host}: could not run {prog}: {source}")]
    Spawn {
        host: String,
        prog: &'static str,
        source: std::io::Error,
    },
    #[error("{host}: {what} failed ({status}): {stderr}")]
    Failed {
        host: String,
        what: String,
        status: String,
        stderr: String,
    },
}

impl Ssh {
    fn command(&self, prog: &'static str) -> Command {
        let mut c = Command::new(prog);
        match &self.config {
            Some(f) => {
                c.arg("-F").arg(f);
            }
            // Fresh cluster machines are in no known_hosts yet: learn a new host's key,
            // refuse a changed one.
            None => {
                c.args(["-o", "StrictHostKeyChecking=accept-new"]);
            }
        }
        if let Some(i) = &self.identity {
            c.arg("-i").arg(i);
        }
        if let Some(u) = &self.user {
            c.arg("-o").arg(format!("User={u}"));
        }
        if let Some(p) = self.port {
            c.arg("-o").arg(format!("Port={p}"));
        }
        let timeout = self.connect_timeout.max(1);
        c.args([
            "-o",
            "BatchMode=yes",
            "-o",
            &format!("ConnectTimeout={timeout}"),
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
        ]);
        c.stdin(Stdio::null());
        c
    }

    fn finish(
        host: &str,
        what: impl Into<String>,
        prog: &'static str,
        out: std::io::Result<Output>,
    ) -> Result<Output, SshError> {
        let out = out.map_err(|source| SshError::Spawn {
            host: host.to_string(),
            prog,
            source,
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(SshError::Failed {
                host: host.to_string(),
                what: what.into(),
                status: out.status.to_string(),
                stderr: {
                    let lines: Vec<&str> = stderr.trim().lines().collect();
                    lines[lines.len().saturating_sub(10)..].join("\n    ")
                },
            });
        }
        Ok(out)
    }

    /// Runs `script` with the remote shell; fails unless it exits 0. Returns its stdout.
    pub fn run(&self, host: &str, script: &str) -> Result<String, SshError> {
        let mut c = self.command("ssh");
        c.arg(host).arg("--").arg(script);
        let out = Self::finish(host, "the remote command", "ssh", c.output())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether the machine answers within the connect timeout.
    pub fn check(&self, host: &str) -> Result<(), SshError> {
        self.run(host, "true").map(|_| ())
    }

    /// Copies a local file to `remote` on `host`.
    pub fn put(&self, host: &str, local: &Path, remote: &str) -> Result<(), SshError> {
        let mut c = self.command("scp");
        c.arg("-q")
            .arg(local)
            .arg(format!("{}:{remote}", scp_host(host)));
        let what = format!("copying {} to {remote}", local.display());
        Self::finish(host, what, "scp", c.output()).map(|_| ())
    }

    /// Copies `remote` (a file or, recursively, a directory) from `host` into `local`.
    pub fn get(&self, host: &str, remote: &str, local: &Path) -> Result<(), SshError> {
        let mut c = self.command("scp");
        c.arg("-q")
            .arg("-r")
            .arg(format!("{}:{remote}", scp_host(host)))
            .arg(local);
        let what = format!("fetching {remote}");
        Self::finish(host, what, "scp", c.output()).map(|_| ())
    }
}

/// scp wants an IPv6 address in brackets.
fn scp_host(host: &str) -> String {
    match host.rsplit_once('@') {
        Some((u, h)) if h.contains(':') => format!("{u}@[{h}]"),
        None if host.contains(':') => format!("[{host}]"),
        _ => host.to_string(),
    }
}

/// Runs `f` on every item with at most `width` at once, and returns the results in the
/// items' order.
pub fn on_all<T: Sync, R: Send>(items: &[T], width: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let width = width.max(1);
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(width) {
        std::thread::scope(|s| {
            let hs: Vec<_> = chunk.iter().map(|it| s.spawn(|| f(it))).collect();
            for h in hs {
                match h.join() {
                    Ok(r) => out.push(r),
                    Err(p) => std::panic::resume_unwind(p),
                }
            }
        });
    }
    out
}

/// Quotes a word for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A pause that the caller can cut short; used between polls.
pub fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("abc-1.2:3,4"), "abc-1.2:3,4");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a;b"), "'a;b'");
    }

    #[test]
    fn pool_keeps_order() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(
            on_all(&v, 3, |x| x * 2),
            (0..10).map(|x| x * 2).collect::<Vec<_>>()
        );
    }

    #[test]
    fn unreachable_host_fails_fast() {
        // A port on loopback that nobody listens on: refused at once.
        let ssh = Ssh {
            port: Some(1),
            connect_timeout: 2,
            ..Ssh::default()
        };
        match ssh.check("127.0.0.1") {
            Err(SshError::Failed { host, .. }) => assert_eq!(host, "127.0.0.1"),
            Err(SshError::Spawn { .. }) => {} // no ssh client installed here
            Ok(()) => panic!("nothing listens on port 1"),
        }
    }

    #[test]
    fn brackets_ipv6_for_scp() {
        assert_eq!(scp_host("root@::1"), "root@[::1]");
        assert_eq!(scp_host("h1"), "h1");
    }
}
