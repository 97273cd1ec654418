//! Loopback ports for a local cluster's processes, chosen before the processes start
//! (each must know its peers' addresses), and kept from every other `mason` process on
//! this machine until this one exits.
//!
//! A port is drawn at random from the 10,000 ports below the kernel's ephemeral range: a
//! port the kernel handed out (port 0) could be taken, between its release here and the
//! child's bind, as the source port of an outgoing connection. A port found free is also
//! locked (`flock` on a file named for it in `$TMPDIR/mason-ports`, a directory every user
//! shares), and the lock is held for the life of this process, so two runs side by side
//! (tests in parallel) never hand the same port to two children in the window between
//! one run's check and its child's bind. The kernel drops the locks when this process
//! exits, however it exits.

use anyhow::Context;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
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
    let dir = lock_dir();
    let mut rng = rand::thread_rng();
    let mut found: Vec<(TcpListener, Option<File>)> = Vec::with_capacity(n);
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
        match dir.as_deref().map(|d| lock(d, port)).transpose()? {
            Some(Claim::Locked(f)) => found.push((l, Some(f))),
            Some(Claim::Taken) => {}
            Some(Claim::Unlockable) | None => found.push((l, None)),
        }
    }
    let addrs = found
        .iter()
        .map(|(l, _)| l.local_addr())
        .collect::<Result<Vec<_>, _>>()
        .context("a bound port's address")?;
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    held.extend(found.into_iter().filter_map(|(_, f)| f));
    Ok(addrs)
}

/// What drawing `port` found in the lock directory.
enum Claim {
    /// Locked now by this process: the port is ours.
    Locked(File),
    /// Another process (or this one, earlier) holds it: draw another.
    Taken,
    /// Its lock file cannot be used (another user's, without the rights): the port is used
    /// unlocked, as every port was before there were locks.
    Unlockable,
}

/// Claims `port`'s lock file in `dir`. The directory is shared by every user of this
/// machine (made world-writable and sticky by whoever creates it), and a lock file is
/// opened read-only where it exists: `flock` needs no more.
fn lock(dir: &Path, port: u16) -> anyhow::Result<Claim> {
    use std::io::ErrorKind;
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join(port.to_string());
    let f = match File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            match File::options()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&p)
            {
                Ok(f) => f,
                // Another process created it just now.
                Err(e) if e.kind() == ErrorKind::AlreadyExists => return lock(dir, port),
                Err(e) if e.kind() == ErrorKind::PermissionDenied => return Ok(Claim::Unlockable),
                Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
            }
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => return Ok(Claim::Unlockable),
        Err(e) => return Err(e).with_context(|| format!("opening {}", p.display())),
    };
    // SAFETY: flock on a descriptor this function owns (kept open in `f`).
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Claim::Locked(f));
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == ErrorKind::WouldBlock {
        return Ok(Claim::Taken);
    }
    Err(e).with_context(|| format!("locking {}", p.display()))
}

/// The shared lock directory, created world-writable and sticky (as /tmp is) so that
/// every user's runs lock in the same place; `None` where it cannot be made.
fn lock_dir() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join("mason-ports");
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "ports are drawn unlocked");
            return None;
        }
    }
    // Only its owner can widen it (others' draws then go unlocked where they cannot
    // create a file in it: see `Claim::Unlockable`).
    let shared = std::fs::Permissions::from_mode(0o1777);
    if std::fs::metadata(&dir).is_ok_and(|m| m.permissions().mode() & 0o7777 != 0o1777) {
        let _ = std::fs::set_permissions(&dir, shared);
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_handed_out_is_not_handed_out_again_while_this_process_lives() {
        let dir = lock_dir().expect("the lock directory");
        let first = free_addrs(8).unwrap();
        let mut seen: std::collections::HashSet<u16> = first.iter().map(|a| a.port()).collect();
        assert_eq!(seen.len(), 8, "distinct ports");
        // Every port handed out is locked: nobody else (not even this process, through a
        // new open file) can take it now, though nothing listens on it.
        for a in &first {
            let claim = lock(&dir, a.port()).unwrap();
            assert!(matches!(claim, Claim::Taken), "{a} is locked");
        }
        for _ in 0..50 {
            for a in free_addrs(4).unwrap() {
                assert!(seen.insert(a.port()), "{a} handed out twice");
            }
        }
    }
}
