//! `JournalBlock::decode` on arbitrary bytes, and `pick_twin` on the input split into two
//! copies; a block that decodes has its framing inside the payload.
#![no_main]

use arbor_format::{journal_payload_bytes, pick_twin, JournalBlock, JOURNAL_PAYLOAD_OFFSET};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The address the block should record: taken from the input so it can match.
    let address = data.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    if let Ok(block) = JournalBlock::decode(data, address) {
        let records = block.records();
        assert!(!records.is_empty());
        assert!(records.len() <= journal_payload_bytes(data.len() as u32));
        assert_eq!(records, &data[JOURNAL_PAYLOAD_OFFSET..JOURNAL_PAYLOAD_OFFSET + records.len()]);
        if let Some(first) = block.journal().first_record() {
            assert!((first as usize) < records.len());
        }
        let _ = format!("{block:?}");
    }
    let (copy0, copy1) = data.split_at(data.len() / 2);
    let uuid = data.get(104..120).map_or([0; 16], |b| b.try_into().unwrap());
    match pick_twin(copy0, copy1, address, &uuid, None) {
        Ok(pick) => assert!(pick.copy < 2),
        Err(e) => {
            let _ = (e.to_string(), e.both_invalid(), e.found_lsn());
        }
    }
});
