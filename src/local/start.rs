//! Starting a local cluster's server processes, each with its metrics port and its log
//! file, and waiting until each listens: log servers (tails first, so that each head finds
//! its successor), sequencers, ZK-Mason's shard servers, then the proxies.

use super::metrics::Endpoints;
use super::{spawn, Cluster};
use anyhow::Context;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Where a run's processes come from and go.
pub(super) struct Starter<'a> {
    pub exe: &'a Path,
    pub logs: &'a Path,
    pub cluster: &'a mut Cluster,
    pub endpoints: &'a mut Endpoints,
}

impl Starter<'_> {
    /// Starts `name` with `args`, logging to `logs/<name>.log`; returns its index in the
    /// cluster. Clients (`stdout`) write their lines to a pipe.
    pub fn spawn(&mut self, name: &str, args: Vec<String>, stdout: bool) -> anyhow::Result<usize> {
        let args = self.endpoints.with(name, args)?;
        let child = spawn(
            self.exe,
            &args,
            &self.logs.join(format!("{name}.log")),
            stdout,
        )?;
        self.cluster.procs.push((name.to_string(), child));
        Ok(self.cluster.procs.len() - 1)
    }

    /// Starts each of `servers` (name, arguments, listening address) in turn, each once
    /// the one before listens.
    pub fn one_by_one(
        &mut self,
        servers: Vec<(String, Vec<String>, SocketAddr)>,
    ) -> anyhow::Result<Vec<usize>> {
        let mut idx = Vec::with_capacity(servers.len());
        for (name, args, addr) in servers {
            let i = self.spawn(&name, args, false)?;
            wait_listening(addr, &mut self.cluster.procs[i].1, &name)?;
            idx.push(i);
        }
        Ok(idx)
    }

    /// Starts all of `servers` at once (they link to each other), then waits until each
    /// listens.
    pub fn together(
        &mut self,
        servers: Vec<(String, Vec<String>, SocketAddr)>,
    ) -> anyhow::Result<Vec<usize>> {
        let mut idx = Vec::with_capacity(servers.len());
        for (name, args, _) in &servers {
            idx.push(self.spawn(name, args.clone(), false)?);
        }
        for ((name, _, addr), &i) in servers.iter().zip(&idx) {
            wait_listening(*addr, &mut self.cluster.procs[i].1, name)?;
        }
        Ok(idx)
    }
}

/// Waits up to 20 s until `child` listens on `addr`; fails at once if it exits first.
pub(super) fn wait_listening(
    addr: SocketAddr,
    child: &mut Child,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(());
        }
        if let Some(st) = child
            .try_wait()
            .with_context(|| format!("checking on {what}"))?
        {
            anyhow::bail!("{what} exited ({st}) before listening on {addr}; see its log");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("{what} is not listening on {addr} after 20 s")
}
