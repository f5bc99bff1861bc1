//! `arbor format` and `arbor info`.

use std::path::Path;

use arbor::check::{decode_slot, space_at, SlotReport, SlotState, Space};
use arbor_format::constants::{SUPERBLOCK_AREA_BYTES, SUPERBLOCK_SLOT_COUNT};
use arbor_format::{ChildPtr, Superblock};
use serde_json::{json, Value};

use crate::device::{is_block_device, lock_held, ReadOnlyDevice};
use crate::error::{CliError, Result};
use crate::util::human;

/// Reads the superblock area without any lock: a read-only memory map for files (the
/// engine never shrinks a store's file), plain reads for block devices.
fn read_area(path: &Path, dev: &ReadOnlyDevice) -> Result<Vec<u8>> {
    let want = usize::try_from(SUPERBLOCK_AREA_BYTES).unwrap_or(usize::MAX);
    let len = usize::try_from(arbor::BlockDevice::len_bytes(dev)).unwrap_or(usize::MAX).min(want);
    if len == 0 {
        return Err(CliError::new(format!("{} is empty: not an Arbor store", path.display())));
    }
    if is_block_device(path) {
        let mut area = vec![0u8; len];
        std::os::unix::fs::FileExt::read_exact_at(dev.file(), &mut area, 0)
            .map_err(|e| CliError::io(path, e))?;
        return Ok(area);
    }
    // SAFETY: the map is read-only and private to this function; the bytes are copied out
    // at once. Another process may write the mapped range meanwhile (the engine rewrites
    // superblock slots in place): a copy caught mid-write fails its crc and is shown as
    // invalid, which is the intended reading of a live store. No process truncates a store
    // file (the engine only grows it), so the mapped pages stay backed.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(dev.file()) }
        .map_err(|e| CliError::io(path, e))?;
    Ok(map.to_vec())
}

fn ptr_json(p: &ChildPtr) -> Value {
    if p.is_null() {
        return Value::Null;
    }
    json!({"address": p.address(), "generation": p.generation(), "crc": p.crc()})
}

fn ptr_text(p: &ChildPtr) -> String {
    if p.is_null() {
        return "-".into();
    }
    format!("{}@g{}", p.address(), p.generation())
}

fn uuid_text(u: [u8; 16]) -> String {
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn state_text(s: &SlotReport) -> String {
    match &s.state {
        SlotState::Valid => "valid".into(),
        SlotState::Empty => "empty".into(),
        SlotState::Invalid(reason) => format!("INVALID: {reason}"),
        _ => "unknown".into(),
    }
}

pub(crate) fn slot_json(s: &SlotReport) -> Value {
    let (state, reason) = match &s.state {
        SlotState::Valid => ("valid", None),
        SlotState::Empty => ("empty", None),
        SlotState::Invalid(r) => ("invalid", Some(r.clone())),
        _ => ("unknown", None),
    };
    let sb = s.superblock.map(|sb| {
        json!({
            "generation": sb.generation(),
            "flushed_gen": sb.flushed_gen(),
            "version": sb.version(),
            "block_bytes": sb.block_bytes(),
            "device_bytes": sb.device_bytes(),
            "crc": sb.crc(),
            "prev_crc": sb.prev_crc(),
            "catalog_root": ptr_json(&sb.catalog_root()),
            "alloc_root": ptr_json(&sb.alloc_root()),
            "pending_root": ptr_json(&sb.pending_root()),
            "orphan_root": ptr_json(&sb.orphan_root()),
            "next_tree_id": sb.next_tree_id(),
        })
    });
    json!({
        "slot": s.slot,
        "offset": s.offset,
        "alternation": alt_name(s.slot),
        "state": state,
        "reason": reason,
        "claimed_generation": s.claimed_generation,
        "superblock": sb,
    })
}

pub(crate) fn space_json(sp: &Space) -> Value {
    json!({
        "block_count": sp.block_count,
        "used_blocks": sp.used_blocks(),
        "free_blocks": sp.free_blocks,
        "pending_blocks": sp.pending_blocks,
        "largest_free_run": sp.largest_free_run,
        "free_runs": sp.free_runs,
        "used_bytes": sp.used_blocks() * u64::from(sp.block_bytes),
        "free_bytes": sp.free_blocks * u64::from(sp.block_bytes),
    })
}

pub fn info(path: &Path, as_json: bool) -> Result<()> {
    let dev = ReadOnlyDevice::open(path, false)?;
    let device_bytes = arbor::BlockDevice::len_bytes(&dev);
    let area = read_area(path, &dev)?;
    let slots: Vec<SlotReport> =
        (0..SUPERBLOCK_SLOT_COUNT).map(|s| decode_slot(&area, s)).collect();
    let newest: Option<Superblock> =
        slots.iter().filter_map(|s| s.superblock).max_by_key(Superblock::generation);
    if newest.is_none() && slots.iter().all(|s| s.claimed_generation.is_none()) {
        return Err(CliError::new(format!(
            "{}: not an Arbor store (no superblock)",
            path.display()
        )));
    }
    let in_use = lock_held(path);
    // Space needs the allocator: best effort, a damaged allocator leaves it out.
    let space = newest.map(|sb| space_at(Box::new(dev), &sb));
    let kind = if is_block_device(path) { "block device" } else { "file" };
    if as_json {
        let facts = Facts { path, kind, device_bytes, in_use, newest };
        println!("{}", serde_json::to_string_pretty(&info_json(&facts, &slots, &space))?);
        return Ok(());
    }
    println!("{}: {kind}, {device_bytes} bytes ({})", path.display(), human(device_bytes));
    if in_use {
        println!("in use: another process holds the store's lock (figures may be moving)");
    }
    if let Some(sb) = newest {
        println!(
            "format version {}, block size {}, uuid {}",
            sb.version(),
            sb.block_bytes(),
            uuid_text(sb.uuid())
        );
    }
    print_slots(&slots);
    match (newest, space) {
        (Some(sb), Some(Ok(sp))) => {
            let bb = u64::from(sp.block_bytes);
            println!(
                "newest generation {}: {} blocks, used {} ({}), free {} ({}), pending {}, \
                 largest free run {} blocks",
                sb.generation(),
                sp.block_count,
                sp.used_blocks(),
                human(sp.used_blocks() * bb),
                sp.free_blocks,
                human(sp.free_blocks * bb),
                sp.pending_blocks,
                sp.largest_free_run
            );
        }
        (Some(sb), Some(Err(e))) => {
            println!("newest generation {}: space unavailable ({e})", sb.generation())
        }
        _ => println!("no superblock copy verifies: run `arbor check` for details"),
    }
    Ok(())
}

/// What `info` found out about the target besides its slots and space.
struct Facts<'a> {
    path: &'a Path,
    kind: &'a str,
    device_bytes: u64,
    in_use: bool,
    newest: Option<Superblock>,
}

/// The `--json` document.
fn info_json(
    f: &Facts<'_>,
    slots: &[SlotReport],
    space: &Option<std::result::Result<Space, arbor::Error>>,
) -> Value {
    let (space, space_error) = match space {
        Some(Ok(sp)) => (space_json(sp), None),
        Some(Err(e)) => (Value::Null, Some(e.to_string())),
        None => (Value::Null, None),
    };
    json!({
        "path": f.path.display().to_string(),
        "kind": f.kind,
        "device_bytes": f.device_bytes,
        "in_use": f.in_use,
        "format_version": f.newest.map(|sb| sb.version()),
        "block_bytes": f.newest.map(|sb| sb.block_bytes()),
        "uuid": f.newest.map(|sb| uuid_text(sb.uuid())),
        "newest_generation": f.newest.map(|sb| sb.generation()),
        "slots": slots.iter().map(slot_json).collect::<Vec<_>>(),
        "space": space,
        "space_error": space_error,
    })
}

/// One line per superblock slot.
fn print_slots(slots: &[SlotReport]) {
    println!("slot  offset  alt  state / generation  flushed  catalog root  alloc root  pending");
    for s in slots {
        let alt = alt_name(s.slot);
        match s.superblock {
            Some(sb) => println!(
                "{:<4}  {:<6}  {alt:<3}  valid, gen {:<11}  {:<7}  {:<12}  {:<10}  {}",
                s.slot,
                s.offset,
                sb.generation(),
                sb.flushed_gen(),
                ptr_text(&sb.catalog_root()),
                ptr_text(&sb.alloc_root()),
                ptr_text(&sb.pending_root()),
            ),
            None => {
                let claims = s.claimed_generation.map(|g| format!(" (claims generation {g})"));
                let claims = claims.unwrap_or_default();
                println!("{:<4}  {:<6}  {alt:<3}  {}{claims}", s.slot, s.offset, state_text(s));
            }
        }
    }
}

/// Alternation A holds slots 0 and 2, B slots 1 and 3 (docs/format.md).
fn alt_name(slot: u8) -> &'static str {
    if arbor_format::alternation(slot) == 0 {
        "A"
    } else {
        "B"
    }
}
