//! `decode_chain` over arbitrary bytes cut into 4 KiB twins (a 16-slot region), from the lsn
//! and store uuid the first block claims; records come out complete and in seq order.
#![no_main]

use arbor_format::{decode_chain, JournalRegion};
use libfuzzer_sys::fuzz_target;

const BLOCK: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(region) = JournalRegion::new(BLOCK as u32, 64, 32) else { return };
    let start_lsn = data.get(64..72).map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let uuid = data.get(104..120).map_or([0; 16], |b| b.try_into().unwrap());
    let twins = data.chunks_exact(2 * BLOCK).map(|twin| twin.split_at(BLOCK));
    let decoded = decode_chain(region, uuid, start_lsn, twins);
    let blocks = (data.len() / (2 * BLOCK)) as u64;
    assert!(decoded.stop.lsn >= start_lsn && decoded.stop.lsn - start_lsn <= blocks);
    let mut last = None;
    for record in &decoded.records {
        assert!(last < Some(record.seq));
        last = Some(record.seq);
        if let Ok(ops) = record.ops(&region) {
            let _ = ops.count();
        }
    }
    let _ = decoded.stop.to_string();
});
