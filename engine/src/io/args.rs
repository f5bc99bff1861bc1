//! Argument checks shared by every device, so that all of them reject the same inputs the
//! same way (`ErrorKind::InvalidInput`) before touching the medium: a rejected batch has
//! written nothing.

use std::io;

use super::{ReadOp, WriteOp};

pub(crate) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Checks one access: offset, length and memory aligned to `sector`, range inside `len`.
pub(crate) fn check_access(
    offset: u64,
    bytes: usize,
    addr: usize,
    sector: u32,
    len: u64,
) -> io::Result<()> {
    let sector_u64 = u64::from(sector);
    debug_assert!(sector.is_power_of_two());
    if !offset.is_multiple_of(sector_u64) {
        return Err(invalid(format!(
            "offset {offset} is not a multiple of the {sector}-byte sector"
        )));
    }
    if !(bytes as u64).is_multiple_of(sector_u64) {
        return Err(invalid(format!(
            "length {bytes} is not a multiple of the {sector}-byte sector"
        )));
    }
    if bytes > 0 && !addr.is_multiple_of(sector as usize) {
        return Err(invalid(format!(
            "buffer address {addr:#x} is not aligned to the {sector}-byte sector"
        )));
    }
    match offset.checked_add(bytes as u64) {
        Some(end) if end <= len => Ok(()),
        _ => Err(invalid(format!(
            "access of {bytes} bytes at offset {offset} is beyond the device length {len}"
        ))),
    }
}

pub(crate) fn check_reads(ops: &[ReadOp<'_>], sector: u32, len: u64) -> io::Result<()> {
    for op in ops {
        check_access(op.offset, op.buf.len(), op.buf.as_ptr() as usize, sector, len)?;
    }
    Ok(())
}

/// Checks every write and that no two writes of the batch overlap: the order in which
/// overlapping writes would land is unspecified on a real device (design.md §10.14 forbids
/// two writes in flight to one address), so the batch is refused instead.
pub(crate) fn check_writes(ops: &[WriteOp<'_>], sector: u32, len: u64) -> io::Result<()> {
    for op in ops {
        check_access(op.offset, op.data.len(), op.data.as_ptr() as usize, sector, len)?;
    }
    if ops.len() > 1 {
        let mut ranges: Vec<(u64, u64)> = ops
            .iter()
            .filter(|op| !op.data.is_empty())
            .map(|op| (op.offset, op.offset + op.data.len() as u64))
            .collect();
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            if pair[1].0 < pair[0].1 {
                return Err(invalid(format!(
                    "writes at offsets {} and {} overlap in one batch",
                    pair[0].0, pair[1].0
                )));
            }
        }
    }
    Ok(())
}
