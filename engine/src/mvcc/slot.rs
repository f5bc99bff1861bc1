//! A block that snapshot readers may have to see as of an older seq: its image and its
//! mod-log entries under one lock (design.md §5, §10.1, §10.4, §10.6).
//!
//! The writer changes a published block and appends the entry that undoes the change while
//! holding the slot's write lock, so a reader that takes the read lock always finds the
//! image together with every entry newer than its seq. The reader copies what it needs,
//! releases the lock, and rewinds its private copy: it never forms `&[u8]` over bytes the
//! writer may be changing, and it never holds the lock while it undoes.

use arbor_format::NodeMut;

use crate::error::corrupt;
use crate::io::AlignedBuf;
use crate::mvcc::modlog::{self, Entry, Op};
use crate::sync::{read, write, Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::Result;

/// The block's bytes: still changing (a dirty block of the open generation) or frozen
/// (written out or being written; shared with the cache).
pub enum Image {
    Mutable(AlignedBuf),
    Frozen(Arc<AlignedBuf>),
    /// A private block of the open generation written back early to its own (fresh)
    /// address to save memory (design.md §4), with the crc it was sealed with. Only the writer
    /// sees this state: such a block is not in the readers' table.
    OnDisk {
        crc: u32,
    },
    /// Only transiently inside `freeze_image`, never observable under the lock.
    Taken,
}

impl Image {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Image::Mutable(b) => b,
            Image::Frozen(b) => b,
            Image::OnDisk { .. } | Image::Taken => &[],
        }
    }

    pub fn is_on_disk(&self) -> bool {
        matches!(self, Image::OnDisk { .. })
    }
}

pub struct SlotState {
    pub image: Image,
    /// Entries in seq order. Only the writer appends (under the write lock) and only pruning
    /// removes, from the front (entries older than every outstanding seq).
    pub log: Vec<Entry>,
    /// A copy of the mutable image as it is now, shared by the readers that need it (made by
    /// the first, so the rest neither copy nor allocate); every edit drops it.
    reader_copy: Option<Arc<AlignedBuf>>,
}

impl SlotState {
    /// The mutable buffer; a frozen image is never edited (§10.1): only the writer edits,
    /// and only blocks of the open generation, which are mutable.
    pub fn buf_mut(&mut self, addr: u64) -> Result<&mut AlignedBuf> {
        self.reader_copy = None;
        match &mut self.image {
            Image::Mutable(b) => Ok(b),
            _ => panic!("edit of block {addr}, which is not a mutable image"),
        }
    }

    /// Replaces the image (early write-back and reading it back in): readers' copies of the
    /// old one go.
    pub fn set_image(&mut self, image: Image) {
        self.reader_copy = None;
        self.image = image;
    }

    /// The current image with nothing to undo for a reader: the frozen image, or the
    /// shared copy of the mutable one if a reader made it since the last edit.
    fn current_for_reader(&self, seq: u64) -> Option<Arc<AlignedBuf>> {
        if self.log.last().is_some_and(|e| e.seq > seq) {
            return None;
        }
        match &self.image {
            Image::Frozen(img) => Some(Arc::clone(img)),
            Image::Mutable(_) => self.reader_copy.clone(),
            Image::OnDisk { .. } | Image::Taken => None,
        }
    }

    /// Freezes the image (its generation is being written out) and returns it.
    pub fn freeze_image(&mut self, addr: u64) -> Result<Arc<AlignedBuf>> {
        self.reader_copy = None;
        match std::mem::replace(&mut self.image, Image::Taken) {
            Image::Mutable(buf) => {
                let frozen = Arc::new(buf);
                self.image = Image::Frozen(Arc::clone(&frozen));
                Ok(frozen)
            }
            other => {
                self.image = other;
                panic!("freeze of block {addr}, which is not a mutable image")
            }
        }
    }
}

/// One block identity's image and log. Shared by the writer and readers through `Arc`.
pub struct Slot {
    pub addr: u64,
    state: RwLock<SlotState>,
    /// Test-only: append log entries after releasing the lock (the broken variant the loom
    /// model of "reader copy vs writer edit" must catch). Never set outside tests.
    #[cfg(any(test, loom, feature = "fault-injection"))]
    broken_log_after_unlock: bool,
}

/// What an edit logged: its seq and the entry's bytes.
pub struct Logged {
    pub seq: u64,
    pub bytes: u64,
}

impl Slot {
    pub fn new(addr: u64, buf: AlignedBuf) -> Slot {
        let state = RwLock::new(SlotState {
            image: Image::Mutable(buf),
            log: Vec::new(),
            reader_copy: None,
        });
        Slot {
            addr,
            state,
            #[cfg(any(test, loom, feature = "fault-injection"))]
            broken_log_after_unlock: false,
        }
    }

    /// Test-only: see `broken_log_after_unlock`.
    #[cfg(any(test, loom, feature = "fault-injection"))]
    pub fn new_broken_log_after_unlock(addr: u64, buf: AlignedBuf) -> Slot {
        Slot { broken_log_after_unlock: true, ..Slot::new(addr, buf) }
    }

    /// Edits the mutable image with `f`. If the block is published (`seq_counter` given),
    /// the entry that undoes the edit is appended with the next seq *under the same write
    /// lock* (design.md §10.1), so no reader can copy the changed image without the entry.
    /// `f` returns `None` when it changed nothing.
    pub fn edit_logged<R>(
        &self,
        seq_counter: Option<&mut u64>,
        f: impl FnOnce(&mut NodeMut<'_>) -> Result<Option<(R, Op)>>,
    ) -> Result<Option<(R, Option<Logged>)>> {
        let mut st = self.write();
        let mut node =
            NodeMut::open_trusted(st.buf_mut(self.addr)?).map_err(|e| corrupt(self.addr, e))?;
        let Some((r, op)) = f(&mut node)? else { return Ok(None) };
        let Some(counter) = seq_counter else { return Ok(Some((r, None))) };
        *counter += 1;
        let seq = *counter;
        // Entries are appended in seq order (pruning and `image_at` rely on it).
        let last = st.log.last().map_or(0, |e| e.seq);
        assert!(last < seq, "block {}: seq {seq} logged after {last}", self.addr);
        let bytes = op.bytes() as u64;
        #[cfg(any(test, loom, feature = "fault-injection"))]
        if self.broken_log_after_unlock {
            drop(st);
            self.write().log.push(Entry { seq, op });
            return Ok(Some((r, Some(Logged { seq, bytes }))));
        }
        st.log.push(Entry { seq, op });
        Ok(Some((r, Some(Logged { seq, bytes }))))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, SlotState> {
        read(&self.state)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, SlotState> {
        write(&self.state)
    }

    /// `image_at`'s fast path: the shared image as of `seq` if no entry is newer than `seq`
    /// and one exists (the frozen image, or the copy of the current one readers share).
    pub fn shared_image_at(&self, seq: u64) -> Option<Arc<AlignedBuf>> {
        self.read().current_for_reader(seq)
    }

    /// The block as of seq `seq`: the image itself when no entry is newer than `seq` and the
    /// image is frozen (zero copy); otherwise a private copy, rewound by undoing newest first
    /// every entry with seq in `(seq, newest]`. Every undo step checks its preconditions: a
    /// log that disagrees with the block is `Error::Corrupt`, never a wrong image.
    pub fn image_at(&self, seq: u64, align: usize) -> Result<Arc<AlignedBuf>> {
        if let Some(image) = self.shared_image_at(seq) {
            return Ok(image);
        }
        let (mut copy, undo): (AlignedBuf, Vec<Op>) = {
            let mut st = self.write();
            if let Some(image) = st.current_for_reader(seq) {
                return Ok(image);
            }
            let first_newer = st.log.partition_point(|e| e.seq <= seq);
            let undo: Vec<Op> = st.log[first_newer..].iter().map(|e| e.op.clone()).collect();
            match &st.image {
                Image::Frozen(img) if undo.is_empty() => return Ok(Arc::clone(img)),
                Image::Mutable(b) if undo.is_empty() => {
                    // The current image: made once, shared until the next edit.
                    let copy = Arc::new(AlignedBuf::from_slice(b, align));
                    st.reader_copy = Some(Arc::clone(&copy));
                    return Ok(copy);
                }
                Image::Frozen(_) | Image::Mutable(_) => {
                    (AlignedBuf::from_slice(st.image.bytes(), align), undo)
                }
                // Only private blocks go to disk early, and readers never reach those.
                Image::OnDisk { .. } | Image::Taken => {
                    panic!("reader met block {}, which is not in memory", self.addr)
                }
            }
        };
        if !undo.is_empty() {
            let mut node = NodeMut::open_trusted(&mut copy).map_err(|e| corrupt(self.addr, e))?;
            for op in undo.iter().rev() {
                modlog::undo(&mut node, self.addr, op)?;
            }
        }
        Ok(Arc::new(copy))
    }

    /// Removes entries with seq `< seq_min`; returns (entries removed, bytes removed, left).
    pub fn prune_below(&self, seq_min: u64) -> (usize, u64, usize) {
        let mut st = self.write();
        debug_assert!(
            st.log.windows(2).all(|p| p[0].seq < p[1].seq),
            "log of {} out of order",
            self.addr
        );
        let n = st.log.partition_point(|e| e.seq < seq_min);
        let bytes: u64 = st.log[..n].iter().map(|e| e.op.bytes() as u64).sum();
        st.log.drain(..n);
        (n, bytes, st.log.len())
    }
}
