//! `RecordReader` on arbitrary bytes (4 KiB store, 1 MiB record limit): it yields at most one
//! error, and a record that reads cleanly has exactly the ops its header counts.
#![no_main]

use arbor_format::RecordReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = RecordReader::new(data, 4096, 1 << 20) else { return };
    let op_count = reader.header().op_count();
    let mut ops = 0u32;
    let mut errors = 0;
    for op in reader {
        match op {
            Ok(op) => {
                ops += 1;
                assert!(op.encoded_bytes() <= data.len());
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1);
    if errors == 0 {
        assert_eq!(ops, op_count);
    }
});
