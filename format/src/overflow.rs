//! Overflow extents: leaf values too large to store inline.
//!
//! ```text
//! block 0                                   block 1 ...                block_count-1
//! | header 64 (kind 3, aux32 = block_count, | value bytes continued ... | ... | zero pad |
//! |   aux64 = value_len) | value bytes ...  |                          |     |          |
//! ```
//!
//! `block_count` = ceil((64 + value_len) / block_bytes) contiguous blocks. The header crc
//! covers the whole extent (tail padding included, and it is zero). Extents are write-once:
//! an update writes a new extent and frees the old one (design.md §10.4), so the `OverflowRef`
//! in the leaf carries the final crc.

use crate::constants::{check_block_bytes, overflow_block_count, HEADER_BYTES, VALUE_BYTES_MAX};
use crate::error::FormatError;
use crate::header::{block_crc, parse_header, seal_block, BlockHeader, BlockKind};
use crate::le::{U32Le, U64Le};
use crate::ptr::OverflowRef;

/// Fills `buf` (exactly `overflow_block_count(value.len(), block_bytes)` blocks) with the
/// header and `value`, zeroes the padding, seals the crc over the whole extent and returns
/// the reference to store in the leaf.
pub fn overflow_write(
    buf: &mut [u8],
    block_bytes: u32,
    address: u64,
    generation: u64,
    owner: u64,
    value: &[u8],
) -> Result<OverflowRef, FormatError> {
    check_block_bytes(block_bytes)?;
    let value_len = value.len() as u64;
    if value_len > VALUE_BYTES_MAX {
        return Err(FormatError::corrupt(format!(
            "overflow: value of {value_len} bytes exceeds {VALUE_BYTES_MAX}"
        )));
    }
    let block_count = overflow_block_count(value_len, block_bytes);
    if buf.len() as u64 != block_count * u64::from(block_bytes) {
        return Err(FormatError::corrupt(format!(
            "overflow: buffer of {} bytes for {block_count} blocks of {block_bytes}",
            buf.len()
        )));
    }
    let mut header = BlockHeader::new(BlockKind::Overflow, 0, address, generation, owner);
    header.aux32 = U32Le::new(block_count as u32);
    header.aux64 = U64Le::new(value_len);
    let (head, rest) = buf.split_at_mut(HEADER_BYTES);
    head.copy_from_slice(bytemuck::bytes_of(&header));
    let (body, pad) = rest.split_at_mut(value.len());
    body.copy_from_slice(value);
    pad.fill(0);
    let crc = seal_block(buf);
    Ok(OverflowRef::new(address, value_len, generation, crc, block_count as u32))
}

/// Verifies an extent read from `expected_address` against the leaf's reference: header
/// (magic, version, kind, address, generation), value length, block count, buffer length and
/// the crc (stored in the header and in the reference). Returns the value bytes.
pub fn overflow_read<'a>(
    buf: &'a [u8],
    expected: &OverflowRef,
    expected_address: u64,
) -> Result<&'a [u8], FormatError> {
    let corrupt = |reason: String| {
        Err(FormatError::corrupt(format!("overflow extent {expected_address}: {reason}")))
    };
    if expected.address() != expected_address {
        return corrupt(format!("reference names address {}", expected.address()));
    }
    let block_count = u64::from(expected.block_count());
    let value_len = expected.value_len();
    let block_bytes = (buf.len() as u64).checked_div(block_count).unwrap_or(0);
    if block_count == 0
        || block_bytes * block_count != buf.len() as u64
        || u32::try_from(block_bytes).map_or(true, |b| check_block_bytes(b).is_err())
    {
        return corrupt(format!("{} bytes is not {block_count} blocks", buf.len()));
    }
    if value_len > VALUE_BYTES_MAX
        || overflow_block_count(value_len, block_bytes as u32) != block_count
    {
        return corrupt(format!("{value_len} bytes do not take {block_count} blocks"));
    }
    let header = parse_header(buf)?;
    if header.kind()? != BlockKind::Overflow || header.level() != 0 {
        return corrupt(format!("block kind {} level {}", header.kind, header.level));
    }
    if header.address() != expected_address {
        return Err(FormatError::misdirected("overflow", expected_address, header.address()));
    }
    if header.generation() != expected.generation()
        || u64::from(header.aux32()) != block_count
        || header.aux64() != value_len
    {
        return corrupt(format!(
            "header (generation {}, {} blocks, {} bytes) does not match {expected:?}",
            header.generation(),
            header.aux32(),
            header.aux64()
        ));
    }
    let computed = block_crc(buf);
    if computed != header.crc() || computed != expected.crc() {
        return Err(FormatError::checksum("overflow", expected.crc(), computed));
    }
    let end = HEADER_BYTES as u64 + value_len;
    buf.get(HEADER_BYTES..end as usize).map_or_else(|| corrupt("value past the extent".into()), Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for len in [0usize, 1, 4032, 4033, 10_000] {
            let value: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let blocks = overflow_block_count(len as u64, 4096) as usize;
            let mut buf = vec![0xffu8; blocks * 4096];
            let r = overflow_write(&mut buf, 4096, 500, 3, 16, &value).unwrap();
            assert_eq!(r.block_count() as usize, blocks);
            assert_eq!(overflow_read(&buf, &r, 500).unwrap(), &value[..]);
            assert!(overflow_read(&buf, &r, 501).is_err());
            let mut flipped = buf.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(overflow_read(&flipped, &r, 500).is_err());
            assert!(overflow_read(&buf[..buf.len() - 1], &r, 500).is_err());
        }
        let mut small = vec![0u8; 4096];
        assert!(overflow_write(&mut small, 4096, 1, 1, 1, &[0; 5000]).is_err());
    }
}
