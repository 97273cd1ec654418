//! `mason watch`: follows one space's contiguous prefix on a running cluster. It watches
//! every replica of every group (as a watcher, under the cluster key), merges what they
//! bind in the space (`merge.rs`), and prints each bound op and each noop range in number
//! order, a line only once every number below it is known, flushing stdout per line.

use crate::args::positive_secs;
use crate::args::KeyArgs;
use anyhow::Context;
use clap::Args;
use mason_client::watch::watch_group_bounded;
use mason_common::transport::{Tcp, Transport};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

mod merge;
use merge::Merge;

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Proxy processes' addresses, by replica index, comma-separated (as `mason client`
    /// takes them).
    #[arg(long, value_delimiter = ',', required = true)]
    pub proxies: Vec<SocketAddr>,
    /// The cluster's proxy groups.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub groups: u32,
    /// The space to follow.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..64))]
    pub space: u32,
    /// The first number to print (default: where the groups' contiguous prefix stands
    /// when the watch has heard from every group).
    #[arg(long)]
    pub from: Option<u64>,
    /// Stop after this many numbers (the last range is cut there).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_parser = positive_secs)]
    pub duration: Option<Duration>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Entries (batches, their ops, snapshot ranges) that may wait above a number no
    /// group has reported; past it the watch stops with an error.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_pending: usize,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Notices in flight from the watched replicas to the merge: a full channel stops the
/// watches reading their replicas (see `watch_group_bounded`).
const CHANNEL: usize = 1024;

/// Runs the watch; returns the exit code.
pub fn run(a: WatchArgs) -> anyhow::Result<i32> {
    let key = a.key.load()?;
    let rt = crate::runtime(1, true)?;
    rt.block_on(follow(a, key))
}

async fn follow(a: WatchArgs, key: Arc<mason_common::auth::ClusterKey>) -> anyhow::Result<i32> {
    let transport: Arc<dyn Transport> = Arc::new(Tcp);
    let (tx, mut rx) = mpsc::channel(CHANNEL);
    for g in 0..a.groups {
        for p in mason_client::group_replicas(&a.proxies, g) {
            let w = watch_group_bounded(transport.clone(), key.clone(), p, g, false, tx.clone());
            tokio::spawn(w);
        }
    }
    drop(tx);
    let mut m = Merge::new(a.space, a.groups, a.max_pending);
    if let Some(f) = a.from {
        m.start(f, a.count);
    }
    let until = a.duration.map(|d| tokio::time::Instant::now() + d);
    let stopped = async {
        match until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stopped);
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    let stdout = std::io::stdout();
    loop {
        tokio::select! {
            n = rx.recv() => {
                let n = n.context("every watch ended")?;
                if let Err(e) = m.note(&n) {
                    anyhow::bail!("space {}: {e}", a.space);
                }
            }
            _ = &mut stopped => return Ok(0),
            _ = every.tick() => {
                if !m.heard_all() {
                    tracing::warn!(groups = ?m.unheard(), "no replica of these groups answers yet");
                } else if m.held() > 0 {
                    tracing::info!(next = ?m.next(), held = m.held(), "waiting for a number below what is known");
                }
            }
        }
        if !m.started() && m.heard_all() {
            let f = m.known_prefix();
            eprintln!(
                "mason watch: space {} from {f} (where the groups' contiguous prefix stands)",
                a.space
            );
            m.start(f, a.count);
        }
        let mut out = stdout.lock();
        while let Some(line) = m.pop() {
            let text = if a.json { line.json() } else { line.text() };
            match writeln!(out, "{text}").and_then(|_| out.flush()) {
                Ok(()) => {}
                // The reader went away (`| head`): nothing more to do.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                Err(e) => return Err(e).context("writing to stdout"),
            }
        }
        if m.done() {
            return Ok(0);
        }
    }
}
