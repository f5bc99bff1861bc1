//! Writes a seed corpus of valid blocks to `corpus/<target>/` so the fuzzers start from
//! structures that pass the magic, version and crc checks:
//! `cargo +nightly run --release --bin make_seeds` (from `fuzz/`).

use arbor_format::*;
use std::fs;
use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), bytes)
}

fn leaf(items: usize, overflow: bool) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut node = NodeMut::init(&mut buf, BlockKind::Leaf, 0, 100, 3, 16);
    for i in 0..items {
        let key = format!("key{i:04}");
        let value = if overflow && i % 3 == 0 {
            ValueRef::Overflow(OverflowRef::new(300, 5000, 2, 7, 2))
        } else {
            ValueRef::Inline(key.as_bytes())
        };
        node.insert(i, key.as_bytes(), value).ok();
    }
    node.seal();
    buf
}

fn internal(items: usize) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut node = NodeMut::init(&mut buf, BlockKind::Internal, 1, 101, 3, 16);
    for i in 0..items {
        let key = if i == 0 { String::new() } else { format!("key{i:04}") };
        let child = ValueRef::Child(ChildPtr::new(200 + i as u64, 3, i as u32));
        node.insert(i, key.as_bytes(), child).ok();
    }
    node.seal();
    buf
}

fn main() -> std::io::Result<()> {
    for (i, block) in [leaf(0, false), leaf(5, false), leaf(40, true), internal(1), internal(30)]
        .iter()
        .enumerate()
    {
        write("node_decode", &format!("node{i}"), block)?;
        write("verify_block", &format!("node{i}"), block)?;
    }
    let mut sb = Superblock::new(4096, [1; 16], 1 << 30);
    sb.set_generation(5);
    sb.set_catalog_root(ChildPtr::new(100, 5, 9));
    sb.seal(1);
    write("superblock_decode", "sb", sb.encode())?;
    for len in [0usize, 100, 5000] {
        let value = vec![0x5a; len];
        let blocks = overflow_block_count(len as u64, 4096) as usize;
        let mut extent = vec![0u8; blocks * 4096];
        if let Ok(reference) = overflow_write(&mut extent, 4096, 300, 2, 16, &value) {
            let mut input = reference.as_bytes().to_vec();
            input.extend_from_slice(&extent);
            write("overflow_read", &format!("extent{len}"), &input)?;
        }
    }
    let mut chunk = BitmapChunk::init(vec![0u8; 4096], 90, 2, 0);
    chunk.set_range(0, 1000);
    chunk.set_range(5000, 17);
    write("bitmap_decode", "chunk", chunk.bytes())?;
    let mut index = AllocIndex::init(vec![0u8; 4096], 91, 2, 1, 0);
    index.push(ChildPtr::new(90, 2, 1)).ok();
    index.push(ChildPtr::NULL).ok();
    write("alloc_index_decode", "index", index.bytes())?;
    let mut pending = PendingList::init(vec![0u8; 4096], 92, 2, 1);
    pending.push(Extent::new(100, 4)).ok();
    pending.set_next(ChildPtr::new(93, 1, 5));
    write("pending_list_decode", "pending", pending.bytes())?;
    let mut orphans = OrphanList::init(vec![0u8; 4096], 94, 2);
    orphans.push(ChildPtr::new(120, 1, 3)).ok();
    write("orphan_list_decode", "orphans", orphans.bytes())?;
    journal_seeds()
}

/// A journal ring of three batches (one record spanning blocks) in a 16-slot region: each
/// record, each block, and the whole chain as seeds.
fn journal_seeds() -> std::io::Result<()> {
    let region = JournalRegion::new(4096, 64, 32).map_err(std::io::Error::other)?;
    let uuid = [9u8; 16];
    let limits = RecordLimits::new(4096, 1 << 20);
    let (mut lsn, mut prev_crc, mut chain) = (1u64, 0u32, Vec::new());
    for (seq, value_len) in [(1u64, 10usize), (2, 9000), (3, 0)] {
        let mut records = Vec::new();
        let mut w = RecordWriter::new(&mut records, seq, limits);
        w.put(16, b"key", &vec![0x5a; value_len]).ok();
        w.remove(16, b"old").ok();
        w.create_tree(17, b"tree").ok();
        w.delete_tree(18).ok();
        w.finish();
        write("journal_record_read", &format!("record{seq}"), &records)?;
        let blocks = batch_block_count(&region, records.len()) as usize;
        let mut out = vec![0u8; 2 * blocks * 4096];
        let start = BatchStart { first_lsn: lsn, prev_crc, uuid, flushed_below: lsn };
        let info =
            encode_batch(&region, &start, &records, &mut out).map_err(std::io::Error::other)?;
        for (i, twin) in out.chunks(8192).enumerate() {
            write("journal_block_decode", &format!("block{}", lsn + i as u64), twin)?;
        }
        chain.extend_from_slice(&out);
        (lsn, prev_crc) = (info.last_lsn + 1, info.last_crc);
    }
    write("journal_chain_decode", "chain", &chain)
}
