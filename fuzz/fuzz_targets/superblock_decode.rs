//! `Superblock::decode` on arbitrary bytes; a record that decodes re-encodes to its bytes.
#![no_main]

use arbor_format::{Superblock, SUPERBLOCK_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sb) = Superblock::decode(data) {
        assert_eq!(sb.encode(), &data[..SUPERBLOCK_BYTES]);
        let _ = format!("{sb:?}");
    }
});
