//! `PendingList::decode`; a list that decodes has only sane extents.
#![no_main]

use arbor_format::PendingList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = PendingList::decode(data) else { return };
    assert!(list.len() <= list.capacity());
    let _ = (list.next(), list.freed_generation());
    for i in 0..list.len() {
        assert!(list.extent(i).end().is_some());
    }
});
