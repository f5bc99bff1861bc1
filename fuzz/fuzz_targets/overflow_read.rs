//! `overflow_read`: the first 32 input bytes are the leaf's `OverflowRef`, the rest the extent.
#![no_main]

use arbor_format::{overflow_read, OverflowRef, HEADER_BYTES, OVERFLOW_REF_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < OVERFLOW_REF_BYTES {
        return;
    }
    let (head, extent) = data.split_at(OVERFLOW_REF_BYTES);
    let Some(reference) = OverflowRef::from_bytes(head) else { return };
    if let Ok(value) = overflow_read(extent, &reference, reference.address()) {
        assert_eq!(value.len() as u64, reference.value_len());
        assert_eq!(value, &extent[HEADER_BYTES..HEADER_BYTES + value.len()]);
    }
});
