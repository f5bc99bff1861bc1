//! `BitmapChunk::decode`; a chunk that decodes answers counts and free-run searches.
#![no_main]

use arbor_format::BitmapChunk;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(chunk) = BitmapChunk::decode(data) else { return };
    assert!(chunk.count_set() <= chunk.bits());
    let hint = data.len() as u64 * 7;
    if let Some(at) = chunk.find_free_run(1 + data.len() as u64 % 64, hint) {
        assert!(!chunk.get(at));
    }
});
