//! `AllocIndex::decode`; an index that decodes lists its children.
#![no_main]

use arbor_format::AllocIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(index) = AllocIndex::decode(data) else { return };
    assert!(index.len() <= index.capacity());
    let _ = index.blocks_per_child();
    for i in 0..index.len() {
        let _ = index.child(i);
    }
});
