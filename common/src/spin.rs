//! Polling before a thread sleeps. A current-thread runtime with nothing to run parks in
//! `epoll_wait`, and every message then costs its reader a sleep and a wake-up: on a VM,
//! the largest single cost of a loaded proxy (docs/benchmarks.md, "Issue 15, fifteenth
//! step"). Before parking, the thread polls its runtime's epoll instance for up to a window,
//! yielding the CPU between polls, and goes on the moment one of its sockets is ready
//! ([`Spin`]). A thread that blocks on a channel polls it the same way ([`Window::wait`]).
//!
//! The window adapts as Linux's guest halt polling does (with a longer default, 1 ms, that
//! also covers a wait on a durable write): an idle spell that ended within the longest
//! window widens it (a message came soon after the thread gave up); a longer one halves
//! it, so an idle process stops polling. A message caught while polling keeps it. Windows
//! of 0 turn it off (`--spin-us 0`).
//!
//! The epoll instance is the one the runtime's build created: its file descriptors are the
//! `anon_inode:[eventpoll]` entries of `/proc/self/fd` that appear across the build. Polling
//! an epoll descriptor reports that it has events without taking them, so the runtime still
//! sees every one. Where none is found (no `/proc`), the thread parks as before.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The window a thread starts from after a short idle spell with no window.
const MIN_WINDOW: Duration = Duration::from_micros(10);

/// A runtime thread's polling state, shared by its park and unpark hooks.
pub struct Spin {
    inner: Mutex<Inner>,
}

struct Inner {
    fds: Vec<libc::pollfd>,
    window: Window,
    /// When the current idle spell began, and whether polling caught its end.
    idle: Option<(Instant, bool)>,
    /// Idle spells that polling caught the end of.
    caught: u64,
}

/// The adaptive polling window (no I/O: the rule alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub now: Duration,
    pub max: Duration,
}

impl Window {
    pub fn new(max: Duration) -> Window {
        Window { now: max, max }
    }

    /// Tries `try_get` until it gives something or the window has passed, yielding the CPU
    /// between tries; then blocks on `block`. The window adapts to how long it waited.
    pub fn wait<T>(
        &mut self,
        mut try_get: impl FnMut() -> Option<T>,
        block: impl FnOnce() -> T,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = try_get() {
                self.after(true, start.elapsed());
                return t;
            }
            if start.elapsed() >= self.now {
                break;
            }
            std::thread::yield_now();
        }
        let t = block();
        self.after(false, start.elapsed());
        t
    }

    /// After an idle spell of `idle` that polling did (`caught`) or did not end.
    pub fn after(&mut self, caught: bool, idle: Duration) {
        if caught || self.max.is_zero() {
            return;
        }
        self.now = if idle <= self.max {
            (self.now * 2).clamp(MIN_WINDOW.min(self.max), self.max)
        } else if self.now / 2 < MIN_WINDOW {
            Duration::ZERO
        } else {
            self.now / 2
        };
    }
}

impl Spin {
    /// The runtime `builder` makes, polling for up to `max` before it parks (`max` zero:
    /// never).
    pub fn build(
        builder: &mut tokio::runtime::Builder,
        max: Duration,
    ) -> std::io::Result<tokio::runtime::Runtime> {
        Spin::build_with(builder, max).map(|(rt, _)| rt)
    }

    fn build_with(
        builder: &mut tokio::runtime::Builder,
        max: Duration,
    ) -> std::io::Result<(tokio::runtime::Runtime, Option<Arc<Spin>>)> {
        if max.is_zero() {
            return Ok((builder.build()?, None));
        }
        let before = eventpoll_fds();
        let spin = Arc::new(Spin {
            inner: Mutex::new(Inner {
                fds: Vec::new(),
                window: Window::new(max),
                idle: None,
                caught: 0,
            }),
        });
        let (park, unpark) = (spin.clone(), spin.clone());
        let rt = builder
            .on_thread_park(move || park.park())
            .on_thread_unpark(move || unpark.unpark())
            .build()?;
        let fds: Vec<libc::pollfd> = eventpoll_fds()
            .into_iter()
            .filter(|fd| !before.contains(fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if fds.is_empty() {
            tracing::debug!("no epoll descriptor of the runtime found: it parks without polling");
        }
        if let Ok(mut s) = spin.inner.lock() {
            s.fds = fds;
        }
        Ok((rt, Some(spin)))
    }

    fn park(&self) {
        let Ok(mut s) = self.inner.lock() else {
            return;
        };
        let start = Instant::now();
        let window = s.window.now;
        let mut caught = false;
        // With no window, one look: an event already waiting is no reason to widen it.
        if !s.fds.is_empty() {
            loop {
                if ready(&mut s.fds) {
                    caught = true;
                    break;
                }
                if start.elapsed() >= window {
                    break;
                }
                std::thread::yield_now();
            }
        }
        s.caught += u64::from(caught);
        s.idle = Some((start, caught));
    }

    fn unpark(&self) {
        let Ok(mut s) = self.inner.lock() else {
            return;
        };
        if let Some((start, caught)) = s.idle.take() {
            s.window.after(caught, start.elapsed());
        }
    }

    #[cfg(test)]
    fn window(&self) -> Duration {
        self.inner.lock().map(|s| s.window.now).unwrap_or_default()
    }

    #[cfg(test)]
    fn caught(&self) -> u64 {
        self.inner.lock().map(|s| s.caught).unwrap_or_default()
    }
}

/// Whether any of `fds` (epoll descriptors) has events waiting; takes none of them.
fn ready(fds: &mut [libc::pollfd]) -> bool {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs;
    // a zero timeout makes poll return at once. The descriptors stay open while the
    // runtime that owns them runs, which is when its hooks are called.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    n > 0
}

/// The process's epoll descriptors (none where `/proc` cannot be read).
fn eventpoll_fds() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:[eventpoll]")
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests;
