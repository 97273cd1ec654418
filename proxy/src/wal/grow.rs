//! With fsync on, the open segment is preallocated ahead of its records by writing zeros
//! and syncing them, so that a synchronous write over them changes no metadata: the writer
//! does it itself at a segment's start and for a write larger than what is left, and past
//! that a thread of its own grows the segment while the writer writes below.

use super::{direct, Wal, PREALLOCATE};
use std::fs::File;
use std::os::unix::fs::FileExt;

impl Drop for Wal {
    /// A growth under way ends before the log does: nothing writes to a segment after its
    /// log is gone.
    fn drop(&mut self) {
        self.finish_growing();
    }
}

impl Wal {
    /// With fsync on, makes sure the open segment is preallocated past the next `n` bytes
    /// (to the end of their block, which a direct write covers), and keeps it growing
    /// ahead of them on a thread of its own ([`Wal::grow_ahead`]). The writer grows it
    /// itself only where nothing did in time: the first [`PREALLOCATE`] bytes of a
    /// segment, or a write larger than what is left.
    pub(super) fn make_room(&mut self, n: u64) {
        if !self.prealloc {
            return;
        }
        let need = direct::whole_blocks(self.len + n);
        if need > self.allocated {
            self.finish_growing();
            if self.prealloc && need > self.allocated {
                let grow = (need - self.allocated).max(PREALLOCATE);
                self.grown_inline += 1;
                self.prealloc = preallocate(&self.file, self.allocated, grow);
                if self.prealloc {
                    self.allocated += grow;
                }
            }
        } else if self.growing.as_ref().is_some_and(|(_, h)| h.is_finished()) {
            self.finish_growing();
        }
        self.grow_ahead(need);
    }

    /// Once less than half of [`PREALLOCATE`] is left past `need`, preallocates the next
    /// [`PREALLOCATE`] bytes of the open segment on a thread of its own, so that the
    /// writer does not wait for zeros to be written and synced (3-5 ms on this project's
    /// VM, every 4 MiB of log). The writer writes only below what a finished growth
    /// reported, so the two never touch the same blocks. Not past the segment's size
    /// (and one more step, for the write that crosses it).
    fn grow_ahead(&mut self, need: u64) {
        if !self.prealloc
            || self.growing.is_some()
            || self.allocated.saturating_sub(need) >= PREALLOCATE / 2
            || self.allocated >= self.segment_bytes.saturating_add(PREALLOCATE)
        {
            return;
        }
        let file = match self.file.try_clone() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "wal: no second handle to preallocate through");
                return;
            }
        };
        let at = self.allocated;
        let grower = std::thread::Builder::new()
            .name("wal-grow".into())
            .spawn(move || preallocate(&file, at, PREALLOCATE));
        match grower {
            Ok(h) => self.growing = Some((at + PREALLOCATE, h)),
            Err(e) => tracing::warn!(error = %e, "wal: no thread to preallocate on"),
        }
    }

    /// Waits for the growth under way, if any, and takes what it preallocated; one that
    /// failed stops preallocation, as when the writer fails to preallocate itself.
    pub(super) fn finish_growing(&mut self) {
        if let Some((to, h)) = self.growing.take() {
            match h.join() {
                Ok(true) => self.allocated = self.allocated.max(to),
                _ => self.prealloc = false,
            }
        }
    }
}

/// Writes `len` zeros to `f` from `at` and syncs them: blocks that are allocated and
/// written already, so that writing records over them later changes no metadata, and an
/// fdatasync then needs no journal commit. (Blocks from `fallocate` are not enough: the
/// first write to each converts it, a journal commit that waits for the other files'
/// dirty data in ext4's ordered mode, 10-130 ms under this project's load.) Returns
/// whether it could.
fn preallocate(f: &File, at: u64, len: u64) -> bool {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64) as usize;
        if let Err(e) = f.write_all_at(&ZEROS[..n], at + done) {
            tracing::warn!(error = %e, "wal: segment not preallocated");
            return false;
        }
        done += n as u64;
    }
    if let Err(e) = f.sync_data() {
        tracing::warn!(error = %e, "wal: segment not preallocated");
        return false;
    }
    true
}
