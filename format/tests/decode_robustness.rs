//! Decoder robustness: over 100,000 random and mutated blocks (random bytes; valid blocks
//! with bit flips; header and slot fields set to boundary values; truncated or extended
//! buffers), every decoder returns `Err` or a value whose accessors all work and which
//! re-encodes to the input bytes (semantically, for slotted nodes). A panic fails the test
//! and prints the seed: `ARBOR_TEST_SEED=0x... cargo test -p arbor-format --test
//! decode_robustness`.

mod common;

use arbor_format::*;
use common::{base_seed, with_seed, Rng};

const CASES_PER_DECODER: u64 = 15_000;

fn seed_for(name: &str) -> u64 {
    let salt = name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    base_seed(0xdec0_de00) ^ salt
}

/// Runs `case` on `CASES_PER_DECODER` seeded RNGs (one seed per batch of 1000 so a failure
/// names a batch that reruns quickly). `case` returns how many decodes succeeded; both
/// outcomes must be common, or the mutations are not exercising the decoder.
fn run_cases(name: &str, case: impl Fn(&mut Rng) -> u64 + std::panic::RefUnwindSafe) {
    let seed = seed_for(name);
    let single = std::env::var("ARBOR_TEST_SEED").is_ok();
    let batches = if single { 1 } else { CASES_PER_DECODER / 1000 };
    let decoded = std::sync::atomic::AtomicU64::new(0);
    for batch in 0..batches {
        with_seed(name, seed.wrapping_add(batch), |seed| {
            let mut rng = Rng::new(seed);
            for _ in 0..1000 {
                decoded.fetch_add(case(&mut rng), std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let decoded = decoded.into_inner();
    eprintln!("{name}: {decoded} of {} cases decoded", batches * 1000);
    if !single {
        assert!(decoded >= CASES_PER_DECODER / 20, "{name}: too few valid decodes ({decoded})");
        assert!(decoded <= CASES_PER_DECODER * 19 / 20, "{name}: too few rejections ({decoded})");
    }
}

fn boundary(rng: &mut Rng, len: usize) -> u64 {
    let len = len as u64;
    match rng.below(10) {
        0 => 0,
        1 => 1,
        2 => len.saturating_sub(1),
        3 => len,
        4 => len + 1,
        5 => u64::from(u16::MAX),
        6 => u64::from(u32::MAX),
        7 => u64::MAX,
        8 => rng.below(len.max(1)),
        _ => rng.next_u64(),
    }
}

fn write_field(buf: &mut [u8], at: usize, width: usize, value: u64) {
    if let Some(dst) = buf.get_mut(at..at + width) {
        dst.copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

/// A mutated copy of `base`. Half the time the crc is re-sealed afterwards, so decoders that
/// check it first still see the structural damage.
fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut buf = base.to_vec();
    if rng.chance(5) {
        return buf;
    }
    match rng.below(8) {
        0 => {
            let len = [0, 1, 63, 64, 100, 4095, 4096, 8192, 65536][rng.index(9)];
            let len = if rng.chance(20) { rng.index(70_000) } else { len };
            buf = rng.bytes(len);
            if rng.chance(50) && buf.len() >= 8 {
                // Often keep a valid magic and version so the structure checks run.
                let magic: Vec<u8> = base.iter().copied().chain([0; 4]).take(4).collect();
                buf[..4].copy_from_slice(&magic);
                write_field(&mut buf, 4, 2, 1);
            }
        }
        1 | 2 => {
            for _ in 0..1 + rng.below(8) {
                if !buf.is_empty() {
                    let at = if rng.chance(50) {
                        rng.index(buf.len().min(256))
                    } else {
                        rng.index(buf.len())
                    };
                    buf[at] ^= 1 << rng.below(8);
                }
            }
        }
        3 => {
            // Header fields: kind, level, item_count, heap_start, aux32, aux64.
            let (at, width) =
                [(6, 1), (7, 1), (8, 2), (40, 4), (44, 4), (48, 8), (10, 2)][rng.index(7)];
            let value = boundary(rng, buf.len());
            write_field(&mut buf, at, width, value);
        }
        4 => {
            // Slot fields (or list entries): back, key_len, val_len, flags, pad, hint.
            let slot = rng.index(8);
            let (field, width) = [(0, 2), (2, 2), (4, 2), (6, 1), (7, 1), (8, 4)][rng.index(6)];
            let value = boundary(rng, buf.len());
            write_field(&mut buf, 64 + slot * 12 + field, width, value);
        }
        5 => {
            let len = rng.index(buf.len() + 1);
            buf.truncate(len);
        }
        6 => {
            let extra = rng.index(5000);
            buf.extend(rng.bytes(extra));
        }
        _ => {
            if !buf.is_empty() {
                let at = rng.index(buf.len());
                let len = rng.index(64).min(buf.len() - at);
                rng.fill(&mut buf[at..at + len]);
            }
        }
    }
    if rng.chance(50) && buf.len() >= HEADER_BYTES {
        seal_block(&mut buf);
    }
    buf
}

fn random_leaf(rng: &mut Rng, block_bytes: u32) -> Vec<u8> {
    let mut buf = vec![0u8; block_bytes as usize];
    let mut node = NodeMut::init(&mut buf, BlockKind::Leaf, 0, 100 + rng.below(100), 5, 16);
    for _ in 0..rng.below(60) {
        let len = rng.index(12);
        let key = rng.bytes(len);
        let value = if rng.chance(20) {
            let len = 2000 + rng.below(10_000);
            ValueRef::Overflow(OverflowRef::new(
                300,
                len,
                4,
                9,
                overflow_block_count(len, block_bytes) as u32,
            ))
        } else {
            ValueRef::Inline(&[7; 40][..rng.index(40)])
        };
        if let Err(i) = node.as_node().search(&key) {
            let _ = node.insert(i, &key, value);
        }
    }
    if rng.chance(30) {
        node.compact();
    }
    seal_block(&mut buf);
    buf
}

fn random_internal(rng: &mut Rng, block_bytes: u32) -> Vec<u8> {
    let mut buf = vec![0u8; block_bytes as usize];
    let level = 1 + rng.below(4) as u8;
    let mut node = NodeMut::init(&mut buf, BlockKind::Internal, level, 200, 5, 16);
    node.insert(0, b"", ValueRef::Child(ChildPtr::new(400, 5, 1))).unwrap();
    for _ in 0..rng.below(60) {
        let len = 1 + rng.index(12);
        let key = rng.bytes(len);
        let child = ChildPtr::new(401 + rng.below(1000), rng.below(6), rng.next_u64() as u32);
        if let Err(i) = node.as_node().search(&key) {
            let _ = node.insert(i, &key, ValueRef::Child(child));
        }
    }
    seal_block(&mut buf);
    buf
}

fn items(node: &Node<'_>) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    (0..node.len())
        .map(|i| {
            let overflow = matches!(node.value(i), ValueRef::Overflow(_));
            (node.key(i).to_vec(), node.value_bytes(i).to_vec(), overflow)
        })
        .collect()
}

/// Every accessor of a decoded node works; the node rebuilds (and compacts) to the same items.
fn exercise_node(rng: &mut Rng, buf: &[u8], node: &Node<'_>) {
    assert!(node.used_bytes() <= buf.len());
    assert_eq!(node.used_bytes() + node.free_bytes(), buf.len());
    let _ = (node.header(), node.level(), node.is_empty(), node.gap_bytes(), format!("{node:?}"));
    for i in 0..node.len() {
        let key = node.key(i);
        assert_eq!(node.search(key), Ok(i));
        match node.kind() {
            BlockKind::Leaf => {
                let _ = node.leaf_value(i);
            }
            _ => {
                assert!(!node.child(i).is_null());
                assert_eq!(node.child_index(key), i);
            }
        }
    }
    let len = rng.index(5);
    let _ = node.search(&rng.bytes(len));
    let original = items(node);
    let mut rebuilt = vec![0u8; buf.len()];
    let header = node.header();
    let mut fresh =
        NodeMut::init(&mut rebuilt, node.kind(), node.level(), header.address(), 1, header.owner());
    for i in 0..node.len() {
        fresh.insert(i, node.key(i), node.value(i)).expect("a decoded node's items fit");
    }
    assert_eq!(items(&Node::decode(&rebuilt).expect("rebuilt node decodes")), original);
    let mut copy = buf.to_vec();
    if let Ok(mut editable) = NodeMut::open(&mut copy) {
        editable.compact();
        assert_eq!(items(&Node::decode(&copy).expect("compacted node decodes")), original);
    }
}

/// `decode_trusted` checks only the header: the accessors must still not panic.
fn touch_unvalidated(node: &Node<'_>) {
    let _ = (node.used_bytes(), node.free_bytes(), node.gap_bytes());
    for i in 0..node.len() {
        let key = node.key(i);
        let _ = (node.search(key), node.value(i), node.value_bytes(i));
        if node.is_leaf() {
            let _ = node.leaf_value(i);
        } else {
            let _ = (node.child(i), node.child_index(key));
        }
    }
}

#[test]
fn node_decode_never_panics() {
    let mut rng = Rng::new(seed_for("node pool"));
    let pool: Vec<Vec<u8>> = (0..64)
        .map(|i| {
            let block_bytes = if i % 8 == 0 { 8192 } else { 4096 };
            if i % 2 == 0 {
                random_leaf(&mut rng, block_bytes)
            } else {
                random_internal(&mut rng, block_bytes)
            }
        })
        .collect();
    run_cases("Node::decode", |rng| {
        let mut ok = 0;
        let buf = {
            let pick = rng.index(pool.len());
            mutate(rng, &pool[pick])
        };
        if let Ok(node) = Node::decode(&buf) {
            ok += 1;
            exercise_node(rng, &buf, &node);
        }
        if let Ok(node) = Node::decode_trusted(&buf) {
            touch_unvalidated(&node);
        }
        let mut copy = buf.clone();
        if let Ok(node) = NodeMut::open(&mut copy) {
            ok += 1;
            let _ = node.as_node().used_bytes();
        }
        ok
    });
}

#[test]
fn verify_block_never_panics() {
    let mut rng = Rng::new(seed_for("verify pool"));
    let pool: Vec<Vec<u8>> = (0..32).map(|_| random_leaf(&mut rng, 4096)).collect();
    run_cases("verify_block", |rng| {
        let mut ok = 0;
        let buf = {
            let pick = rng.index(pool.len());
            mutate(rng, &pool[pick])
        };
        let recorded = buf.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
        let address = if rng.chance(90) { recorded } else { rng.next_u64() };
        if let Ok(header) = verify_block(&buf, address) {
            ok += 1;
            assert_eq!(bytemuck::bytes_of(&header), &buf[..HEADER_BYTES]);
            assert_eq!(header.address(), address);
            let _ = (header.kind().unwrap(), header.crc(), block_crc(&buf));
        }
        let ptr = ChildPtr::new(address, 5, rng.next_u64() as u32);
        let _ = verify_child(&buf, &ptr);
        let _ = parse_header(&buf);
        ok
    });
}

fn sample_superblock(rng: &mut Rng) -> Superblock {
    let block_bytes = [4096, 8192, 65536][rng.index(3)];
    let mut sb =
        Superblock::new(block_bytes, [rng.next_u64() as u8; 16], (1 << 30) + rng.below(1 << 30));
    sb.set_generation(10 + rng.below(100));
    sb.set_flushed_gen(rng.below(10));
    sb.set_catalog_root(ChildPtr::new(100, 5, rng.next_u64() as u32));
    sb.set_alloc_root(ChildPtr::new(101, 5, rng.next_u64() as u32));
    sb.set_alloc_level(1);
    let first = arbor_format::constants::first_data_block(block_bytes);
    sb.set_journal(&arbor_format::JournalRegion::new(block_bytes, first, 16).unwrap());
    sb.set_replay_lsn(1 + rng.below(1000));
    sb.set_checkpoint_seq(rng.below(1000));
    sb.seal(rng.below(4) as u8);
    sb
}

#[test]
fn superblock_decode_never_panics() {
    let mut rng = Rng::new(seed_for("superblock pool"));
    let pool: Vec<Vec<u8>> =
        (0..16).map(|_| sample_superblock(&mut rng).encode().to_vec()).collect();
    run_cases("Superblock::decode", |rng| {
        let mut ok = 0;
        let mut buf = {
            let pick = rng.index(pool.len());
            mutate(rng, &pool[pick])
        };
        if rng.chance(50) && buf.len() >= SUPERBLOCK_BYTES {
            // Superblock fields, then a superblock crc so the field checks run.
            let at = [8, 10, 11, 12, 32, 40, 48, 64, 72, 80, 84, 160, 168, 176, 184, 200, 3000]
                [rng.index(17)];
            let value = boundary(rng, 4096);
            write_field(&mut buf, at, 8.min(SUPERBLOCK_BYTES - at), value);
            if let Ok(mut sb) =
                bytemuck::try_pod_read_unaligned::<Superblock>(&buf[..SUPERBLOCK_BYTES])
            {
                let crc = sb.compute_crc();
                sb.set_crc(crc);
                buf[..SUPERBLOCK_BYTES].copy_from_slice(sb.encode());
            }
        }
        if let Ok(sb) = Superblock::decode(&buf) {
            ok += 1;
            assert_eq!(sb.encode(), &buf[..SUPERBLOCK_BYTES]);
            assert_eq!(sb.block_count(), sb.device_bytes() / u64::from(sb.block_bytes()));
            let _ = (format!("{sb:?}"), slot_offset(sb.slot()), alternation(sb.slot()));
            assert!(Superblock::decode_slot(&buf, sb.slot()).is_ok());
        }
        ok
    });
}

#[test]
fn overflow_read_never_panics() {
    let mut rng = Rng::new(seed_for("overflow pool"));
    let pool: Vec<(Vec<u8>, OverflowRef)> = (0..16)
        .map(|_| {
            let block_bytes = [4096, 8192][rng.index(2)];
            let len = rng.index(20_000);
            let value = rng.bytes(len);
            let blocks = overflow_block_count(value.len() as u64, block_bytes) as usize;
            let mut buf = vec![0u8; blocks * block_bytes as usize];
            let r = overflow_write(&mut buf, block_bytes, 700, 6, 16, &value).unwrap();
            (buf, r)
        })
        .collect();
    run_cases("overflow_read", |rng| {
        let mut ok = 0;
        let (base, base_ref) = &pool[rng.index(pool.len())];
        let buf = mutate(rng, base);
        let mut fields = [
            700,
            base_ref.value_len(),
            6,
            u64::from(base_ref.crc()),
            u64::from(base_ref.block_count()),
        ];
        if rng.chance(70) && buf.len() >= HEADER_BYTES {
            // Follow the (possibly mutated and resealed) header, so the later checks run.
            fields[3] = u64::from(u32::from_le_bytes(buf[12..16].try_into().unwrap()));
        }
        if rng.chance(30) {
            let at = rng.index(fields.len());
            fields[at] = boundary(rng, buf.len());
        }
        let r =
            OverflowRef::new(fields[0], fields[1], fields[2], fields[3] as u32, fields[4] as u32);
        let address = if rng.chance(90) { r.address() } else { rng.next_u64() };
        if let Ok(value) = overflow_read(&buf, &r, address) {
            ok += 1;
            assert_eq!(value.len() as u64, r.value_len());
            assert_eq!(value, &buf[HEADER_BYTES..HEADER_BYTES + value.len()]);
        }
        ok
    });
}

#[test]
fn bitmap_decode_never_panics() {
    let mut rng = Rng::new(seed_for("bitmap pool"));
    let pool: Vec<Vec<u8>> = (0..16)
        .map(|i| {
            let block_bytes = if i % 4 == 0 { 8192 } else { 4096 };
            let bits = bitmap_bits_per_chunk(block_bytes);
            let mut chunk = BitmapChunk::init(vec![0u8; block_bytes as usize], 90, 3, bits * i);
            for _ in 0..rng.below(50) {
                let start = rng.below(bits);
                chunk.set_range(start, rng.below(500).min(bits - start));
            }
            seal_block(chunk.bytes_mut());
            chunk.into_inner()
        })
        .collect();
    run_cases("BitmapChunk::decode", |rng| {
        let mut ok = 0;
        let buf = {
            let pick = rng.index(pool.len());
            mutate(rng, &pool[pick])
        };
        if let Ok(chunk) = BitmapChunk::decode(&buf[..]) {
            ok += 1;
            assert_eq!(chunk.bytes(), &buf[..]);
            assert!(chunk.count_set() <= chunk.bits());
            let _ = (chunk.first_block(), chunk.get(rng.below(chunk.bits() + 10)));
            if let Some(at) =
                chunk.find_free_run(1 + rng.below(100), rng.next_u64() % (chunk.bits() + 5))
            {
                assert!(!chunk.get(at));
            }
        }
        ok
    });
}

#[test]
fn alloc_index_decode_never_panics() {
    let mut rng = Rng::new(seed_for("index pool"));
    let pool: Vec<Vec<u8>> = (0..16)
        .map(|i| {
            let mut index = AllocIndex::init(vec![0u8; 4096], 91, 3, 1 + (i % 3) as u8, 0);
            for _ in 0..rng.below(170) {
                let _ = index.push(ChildPtr::new(500 + rng.below(100), 2, 3));
            }
            seal_block(index.bytes_mut());
            index.into_inner()
        })
        .collect();
    run_cases("AllocIndex::decode", |rng| {
        let mut ok = 0;
        let buf = {
            let pick = rng.index(pool.len());
            mutate(rng, &pool[pick])
        };
        if let Ok(index) = AllocIndex::decode(&buf[..]) {
            ok += 1;
            assert_eq!(index.bytes(), &buf[..]);
            assert!(index.len() <= index.capacity());
            let _ = (index.level(), index.first_block(), index.blocks_per_child(), index.is_full());
            for i in 0..index.len() {
                let _ = index.child(i);
            }
        }
        ok
    });
}

#[test]
fn list_decoders_never_panic() {
    let mut rng = Rng::new(seed_for("list pool"));
    let mut pool: Vec<Vec<u8>> = Vec::new();
    for i in 0..8u64 {
        let mut pending = PendingList::init(vec![0u8; 4096], 92, 3, i);
        for _ in 0..rng.below(260) {
            let _ = pending.push(Extent::new(64 + rng.below(1000), 1 + rng.below(9)));
        }
        pending.set_next(ChildPtr::new(93, 3, 4));
        pool.push(pending.into_inner());
        let mut orphans = OrphanList::init(vec![0u8; 4096], 94, 3);
        for _ in 0..rng.below(170) {
            let _ = orphans.push(ChildPtr::new(64 + rng.below(1000), 2, 5));
        }
        pool.push(orphans.into_inner());
    }
    run_cases("PendingList/OrphanList::decode", |rng| {
        let mut ok = 0;
        let buf = {
            let pick = rng.index(pool.len());
            mutate(rng, &pool[pick])
        };
        if let Ok(list) = PendingList::decode(&buf[..]) {
            ok += 1;
            assert_eq!(list.bytes(), &buf[..]);
            assert!(list.len() <= list.capacity());
            let _ = (list.next(), list.freed_generation());
            for i in 0..list.len() {
                let extent = list.extent(i);
                assert!(extent.count() > 0 && extent.end().is_some());
            }
        }
        if let Ok(list) = OrphanList::decode(&buf[..]) {
            ok += 1;
            assert_eq!(list.bytes(), &buf[..]);
            assert!(list.len() <= list.capacity());
            let _ = list.next();
            for i in 0..list.len() {
                assert!(!list.get(i).is_null());
            }
        }
        ok
    });
}
