//! `AlignedBuf`: heap memory aligned for O_DIRECT, owned for the whole I/O operation.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

/// A zero-initialised, fixed-length byte buffer whose start address is aligned to `align`
/// (a power of two, at least the device's logical sector). O_DIRECT requires the memory,
/// the file offset and the length to be sector-aligned; this type guarantees the memory part.
///
/// The buffer owns its memory until dropped, so an I/O submitted on it stays valid as long
/// as the caller keeps the buffer alive until the completion is reaped.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    align: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation (like Vec<u8>); sharing `&AlignedBuf`
// only permits reads, and moving it between threads moves ownership.
unsafe impl Send for AlignedBuf {}
// SAFETY: as above; `&AlignedBuf` exposes only `&[u8]`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes aligned to `align`. `len` may be zero.
    ///
    /// Panics if `align` is not a power of two or the layout overflows: both are programming
    /// errors (alignment comes from validated constants), never from disk bytes.
    pub fn zeroed(len: usize, align: usize) -> AlignedBuf {
        assert!(align.is_power_of_two(), "alignment must be a power of two");
        if len == 0 {
            // A dangling but aligned pointer is valid for zero-length slices.
            let ptr = NonNull::new(align as *mut u8).expect("align is non-zero");
            return AlignedBuf { ptr, len, align };
        }
        if let Some(ptr) = super::pool::take(len, align) {
            // SAFETY: the pool hands out `len` writable bytes owned by this buffer alone.
            unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, len) };
            return AlignedBuf { ptr, len, align };
        }
        let layout = Layout::from_size_align(len, align).expect("valid buffer layout");
        // SAFETY: `layout` has a non-zero size (len > 0 checked above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        AlignedBuf { ptr, len, align }
    }

    /// Copies `bytes` into a new buffer aligned to `align`.
    pub fn from_slice(bytes: &[u8], align: usize) -> AlignedBuf {
        assert!(align.is_power_of_two(), "alignment must be a power of two");
        let len = bytes.len();
        if len > 0 {
            if let Some(ptr) = super::pool::take(len, align) {
                // SAFETY: the pool hands out `len` writable bytes owned by this buffer alone,
                // and `bytes` (a live slice) cannot overlap them; every byte is written here.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), len) };
                return AlignedBuf { ptr, len, align };
            }
        }
        let mut buf = AlignedBuf::zeroed(len, align);
        buf.copy_from_slice(bytes);
        buf
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The alignment of its memory, in bytes.
    pub fn align(&self) -> usize {
        self.align
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes (zeroed at allocation) for as
        // long as `self` lives, and `&self` forbids concurrent mutation.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> AlignedBuf {
        AlignedBuf::from_slice(self, self.align)
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len == 0 || super::pool::give(self.ptr, self.len, self.align) {
            return;
        }
        let layout = Layout::from_size_align(self.len, self.align).expect("layout was valid");
        // SAFETY: allocated in `zeroed` with exactly this layout (not a pooled class, or the
        // pool would have taken it back above) and not freed before.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).field("align", &self.align).finish()
    }
}

/// Memory a streamed read lands in ([`super::StreamRead`]): the device fills `bytes` and
/// hands the buffer back. An [`AlignedBuf`], or memory a caller lends (a pool frame).
pub trait ReadBuf {
    /// The bytes to fill: aligned to the device's sector, a whole number of sectors.
    fn bytes(&mut self) -> &mut [u8];
    /// The buffer itself, if it is an `AlignedBuf` (lent memory is not).
    fn into_aligned(self: Box<Self>) -> Option<AlignedBuf>;
}

impl ReadBuf for AlignedBuf {
    fn bytes(&mut self) -> &mut [u8] {
        self
    }
    fn into_aligned(self: Box<Self>) -> Option<AlignedBuf> {
        Some(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_zeroing() {
        for align in [512usize, 4096, 65536] {
            let buf = AlignedBuf::zeroed(3 * align, align);
            assert_eq!(buf.as_ptr() as usize % align, 0);
            assert!(buf.iter().all(|&b| b == 0));
        }
        let empty = AlignedBuf::zeroed(0, 4096);
        assert!(empty.is_empty());
    }
}
