//! Fault injection (what the seed makes the simulated device do next) and the rule that
//! says which `Error::Corrupt` answers the injected damage explains.

use std::ops::Range;

use arbor::io::RandomFaults;
use arbor_format::constants::first_data_block;
use arbor_format::JournalRegion;

use crate::config::Config;
use crate::ev;
use crate::session::Session;

/// Blocks past a named address that an error about it may cover: an overflow extent is
/// named by its first block (values here span at most 16 blocks plus one).
const EXTENT_BLOCKS_MAX: u64 = 17;

/// Whether an `Error::Corrupt { addr }` (or a check finding at `addr`) lies where injected
/// damage changed stored bytes: the block itself or an extent starting there; any address
/// inside the superblock area stands for the superblocks.
pub fn explains(damage: &[Range<u64>], addr: u64, cfg: &Config) -> bool {
    let block = u64::from(cfg.opts.block_bytes);
    let first = first_data_block(cfg.opts.block_bytes);
    let span = if addr < first {
        0..first * block
    } else {
        addr * block..(addr + EXTENT_BLOCKS_MAX) * block
    };
    damage.iter().any(|d| d.start < span.end && span.start < d.end)
}

/// Whether damage touched the journal region (design.md §11.1: right after the superblock
/// area, sized from the device and `journal_bytes` as `create` sizes it).
pub fn hits_journal(damage: &[Range<u64>], cfg: &Config) -> bool {
    let bb = cfg.opts.block_bytes;
    let Ok(region) = JournalRegion::plan(bb, cfg.device_bytes, cfg.opts.journal_bytes) else {
        return false;
    };
    let span = region.byte_offset(region.start_block())..region.byte_offset(region.end_block());
    damage.iter().any(|d| d.start < span.end && span.start < d.end)
}

/// Whether damage touched the superblock area.
pub fn hits_superblocks(damage: &[Range<u64>], cfg: &Config) -> bool {
    let end = first_data_block(cfg.opts.block_bytes) * u64::from(cfg.opts.block_bytes);
    damage.iter().any(|d| d.start < end)
}

impl Session<'_> {
    /// Injects one fault, chosen by the seed.
    pub fn inject_fault(&mut self) {
        let known = self.sim.cfg.known_faults;
        let roll = self.sim.rng.below(100);
        match roll {
            0..=29 => {
                let n = self.sim.rng.below(40);
                ev!(self.sim.trace, "fault: power cut after {n} device ops");
                self.dev.power_cut_after(n);
            }
            30..=44 => {
                let n = self.sim.rng.below(20);
                ev!(self.sim.trace, "fault: writes and flushes fail after {n}");
                self.dev.fail_after(n);
            }
            45..=49 => {
                ev!(self.sim.trace, "fault: the next flush fails");
                self.dev.fail_next_flush();
            }
            50..=54 => {
                let (at, len) = self.random_block_range();
                ev!(self.sim.trace, "fault: writes to {at}+{len} fail");
                self.dev.fail_writes_at(at..at + len);
            }
            55..=69 => {
                let ppm = [2_000, 20_000, 100_000][self.sim.rng.below(3) as usize];
                ev!(self.sim.trace, "fault: read EIO at {ppm} ppm");
                self.set_random(RandomFaults { read_eio_ppm: ppm, ..self.random });
            }
            70..=84 if known => self.bit_rot(),
            85..=99 if known => {
                let lost = [0, 5_000, 30_000][self.sim.rng.below(3) as usize];
                let misdirected = [0, 5_000, 30_000][self.sim.rng.below(3) as usize];
                ev!(self.sim.trace, "fault: lost writes {lost} ppm, misdirected {misdirected} ppm");
                let faults = RandomFaults {
                    write_lost_ppm: lost,
                    write_misdirected_ppm: misdirected,
                    ..self.random
                };
                self.set_random(faults);
                self.crash_in = Some(self.crash_in.unwrap_or(u32::MAX).min(20));
            }
            _ => {}
        }
    }

    /// A block-aligned range of one to four blocks among the blocks in use (the allocator
    /// fills the device from the low end) or in the superblock area.
    fn random_block_range(&mut self) -> (u64, u64) {
        let block = u64::from(self.sim.cfg.opts.block_bytes);
        let stats = self.db.stats();
        let first = first_data_block(self.sim.cfg.opts.block_bytes);
        let used = stats.blocks_total.saturating_sub(stats.blocks_free).max(1);
        let rng = &mut self.sim.rng;
        let addr = if rng.chance(10) {
            // One of the superblock slots, 64 KiB apart.
            rng.below(4) * (65536 / block)
        } else {
            first + rng.below(used + used / 4)
        };
        let addr = addr.min(self.sim.cfg.device_bytes / block - 1);
        (addr * block, block * (1 + rng.below(4)).min(self.sim.cfg.device_bytes / block - addr))
    }

    /// Flips one to three bits at rest in blocks in use (or in the superblock area), then
    /// crashes soon so the recovery meets the damage.
    fn bit_rot(&mut self) {
        let flips = 1 + self.sim.rng.below(3);
        for _ in 0..flips {
            let (at, len) = self.random_block_range();
            let byte = at + self.sim.rng.below(len);
            let bit = self.sim.rng.below(8) as u8;
            ev!(self.sim.trace, "fault: bit rot at byte {byte} bit {bit}");
            self.dev.flip_bit(byte, bit);
        }
        let n = self.sim.rng.below(6) as u32;
        self.crash_in = Some(self.crash_in.unwrap_or(u32::MAX).min(n));
    }
}
