//! Removing files the log no longer needs without holding up its writer or its disk. On a
//! file system mounted with `discard` (this project's VM's is), freeing a file's blocks
//! sends the device a discard and waits for it, in whichever thread drops the file's last
//! link or handle: a 64 MiB segment's discard took 32 ms here, and every direct write
//! and rename of the process queued behind it; a replaced snapshot file's, 0.5 ms in the
//! writer's own path, ten times a second per proxy.
//!
//! So a segment is renamed out of the log first (`<segment>.gone`, which replay does not
//! read; with fsync on the directory is synced before anything is cut), then cut from its
//! end a step at a time, with a pause between steps, and only then unlinked; and the
//! handle that keeps a replaced file's blocks is dropped on a thread of its own.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What one cut of a segment frees at most.
const STEP: u64 = 4 << 20;
/// The pause between two cuts, so that the writer's writes get to the device between them.
const PAUSE: Duration = Duration::from_millis(5);
/// The suffix of a segment being removed.
pub(super) const GONE: &str = ".gone";

/// Removes `segments` on a thread of its own, after dropping `closing`. Each is renamed
/// out of the log (all of them, and with `fsync` the renames synced, before any is cut: a
/// segment cut short under its own name would read as damage mid-log), then cut
/// gradually.
pub(super) fn segments_in_background(
    dir: PathBuf,
    segments: Vec<PathBuf>,
    closing: Option<File>,
    fsync: bool,
) {
    background(move || {
        drop(closing);
        let mut gone = Vec::new();
        for p in segments {
            let mut to = p.clone().into_os_string();
            to.push(GONE);
            let to = PathBuf::from(to);
            if std::fs::rename(&p, &to).is_ok() {
                gone.push(to);
            }
        }
        if gone.is_empty() {
            return;
        }
        let synced = if fsync { super::sync_dir(&dir) } else { Ok(()) };
        if let Err(e) = synced {
            // Without a durable rename, cutting could leave a short segment in the log.
            tracing::warn!(error = %e, "wal: old segments renamed, not removed");
            return;
        }
        for p in gone {
            remove_gradually(&p);
        }
    });
}

/// Cuts `path` from its end [`STEP`] bytes at a time, then unlinks it.
pub(super) fn remove_gradually(path: &Path) {
    if let Ok(f) = OpenOptions::new().write(true).open(path) {
        let mut len = f.metadata().map(|m| m.len()).unwrap_or(0);
        while len > STEP {
            len -= STEP;
            if f.set_len(len).is_err() {
                break;
            }
            std::thread::sleep(PAUSE);
        }
    }
    let _ = std::fs::remove_file(path);
}

/// Segments a process left half removed (`.gone`), removed on a thread of its own.
pub(super) fn leftovers_in_background(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let left: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(GONE))
        .collect();
    if !left.is_empty() {
        background(move || left.iter().for_each(|p| remove_gradually(p)));
    }
}

/// Drops `old` (the last handle on a replaced file) on a thread of its own, where its
/// blocks are freed.
pub(super) fn drop_in_background(old: Option<File>) {
    if let Some(f) = old {
        background(move || drop(f));
    }
}

/// Runs `work` on a thread of its own. Where no thread can be started, what it holds is
/// dropped here instead (a replaced file is then freed in the caller's thread, and old
/// segments stay until the process next starts, which removes them).
fn background(work: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name("wal-free".into())
        .spawn(work)
    {
        tracing::warn!(error = %e, "wal: no thread to free old files on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file larger than a step is cut and unlinked.
    #[test]
    fn a_large_file_is_cut_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proxy.wal.7.gone");
        let f = File::create(&p).unwrap();
        f.set_len(3 * STEP + 5).unwrap();
        drop(f);
        remove_gradually(&p);
        assert!(!p.exists());
    }
}
