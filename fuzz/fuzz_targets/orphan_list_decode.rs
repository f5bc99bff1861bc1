//! `OrphanList::decode`; a list that decodes holds only non-null roots.
#![no_main]

use arbor_format::OrphanList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = OrphanList::decode(data) else { return };
    assert!(list.len() <= list.capacity());
    let _ = list.next();
    for i in 0..list.len() {
        assert!(!list.get(i).is_null());
    }
});
