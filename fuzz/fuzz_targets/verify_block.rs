//! `verify_block` on arbitrary bytes, at the address the block records; a block that verifies
//! returns its own header bytes.
#![no_main]

use arbor_format::{verify_block, BlockHeader, HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let address = BlockHeader::from_block(data).map_or(0, |h| h.address());
    if let Ok(header) = verify_block(data, address) {
        assert_eq!(header.as_bytes(), &data[..HEADER_BYTES]);
    }
});
