//! Loopback ports for a local cluster's processes, chosen before the processes start
//! (each must know its peers' addresses), and kept from every other `mason` process on
//! this machine until this one exits.
//!
//! A port is drawn at random from the 10,000 ports below the kernel's ephemeral range: a
//! port the kernel handed out (port 0) could be taken, between its release here and the
//! child's bind, as the source port of an outgoing connection. A port found free is also
//! locked (`flock` on a file named for it in `$TMPDIR/mason-ports`), and the lock is held
//! for the life of this process, so two runs side by side (tests in parallel) never hand
//! the same port to two children in the window between one run's check and its child's
//! bind. The kernel drops the locks when this process exits, however it exits.

use anyhow::Context;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;

/// The lock files of every port this process handed out.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// `n` distinct loopback ports, free now and locked against every other caller on this
/// machine. Falls back to the kernel's choice where the range below the ephemeral one is
/// too small.
pub(super) fn free_addrs(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    use rand::Rng;
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let dir = std::env::temp_dir().join("mason-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = rand::thread_rng();
    let mut found: Vec<(TcpListener, File)> = Vec::with_capacity(n);
    let mut tries = 0;
    while found.len() < n {
        tries += 1;
        if tries > 64 * n + 1_000 {
            anyhow::bail!("no {n} free loopback ports after {tries} tries");
        }
        let port = if low > 11_024 && tries < 64 * n {
            rng.gen_range(low - 10_000..low)
        } else {
            0
        };
        let l = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            Err(_) if port != 0 => continue,
            Err(e) => return Err(e).context("finding free loopback ports"),
        };
        let port = l.local_addr().context("a bound port's address")?.port();
        if let Some(lock) = lock(&dir, port)? {
            found.push((l, lock));
        }
    }
    let addrs = found
        .iter()
        .map(|(l, _)| l.local_addr())
        .collect::<Result<Vec<_>, _>>()
        .context("a bound port's address")?;
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    held.extend(found.into_iter().map(|(_, f)| f));
    Ok(addrs)
}

/// The lock on `port`, or `None` where another process (or this one) holds it.
fn lock(dir: &std::path::Path, port: u16) -> anyhow::Result<Option<File>> {
    let p = dir.join(port.to_string());
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", p.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_handed_out_is_not_handed_out_again_while_this_process_lives() {
        let dir = std::env::temp_dir().join("mason-ports");
        let first = free_addrs(8).unwrap();
        let mut seen: std::collections::HashSet<u16> = first.iter().map(|a| a.port()).collect();
        assert_eq!(seen.len(), 8, "distinct ports");
        // Every port handed out is locked: nobody else (not even this process, through a
        // new open file) can take it now, though nothing listens on it.
        for a in &first {
            assert!(lock(&dir, a.port()).unwrap().is_none(), "{a} is locked");
        }
        for _ in 0..50 {
            for a in free_addrs(4).unwrap() {
                assert!(seen.insert(a.port()), "{a} handed out twice");
            }
        }
    }
}
