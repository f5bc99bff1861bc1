//! SimDevice: crash semantics (flushed writes survive, unflushed ones may, tears are
//! sector-granular), determinism, and every injected fault.

use std::io::ErrorKind;

use arbor::io::{BlockDevice, CountingDevice, RandomFaults, SimDevice, WriteOp};
use arbor::AlignedBuf;

const SECTOR: u32 = 512;

fn filled(byte: u8, len: usize) -> AlignedBuf {
    AlignedBuf::from_slice(&vec![byte; len], 4096)
}

fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(len, 4096);
    dev.read_at(offset, &mut buf).unwrap();
    buf
}

fn is_eio(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(5)
}

#[test]
fn flushed_writes_always_survive() {
    for seed in 0..64 {
        let dev = SimDevice::new(1 << 20, SECTOR, seed);
        dev.write_at(0, &filled(0xAA, 8192)).unwrap();
        dev.flush().unwrap();
        dev.write_at(65536, &filled(0xBB, 8192)).unwrap();
        let after = dev.crash();
        assert!(read(&after, 0, 8192).iter().all(|&b| b == 0xAA), "seed {seed}");
    }
}

#[test]
fn unflushed_writes_may_or_may_not_survive_and_tear_by_sector() {
    let sectors = 8usize;
    let len = sectors * SECTOR as usize;
    let (mut all_new, mut all_old, mut torn) = (0, 0, 0);
    for seed in 0..200 {
        let dev = SimDevice::new(1 << 20, SECTOR, seed);
        dev.write_at(4096, &filled(0x11, len)).unwrap();
        dev.flush().unwrap();
        dev.write_at(4096, &filled(0x22, len)).unwrap();
        assert!(read(&dev, 4096, len).iter().all(|&b| b == 0x22), "reads see the latest");
        let image = read(&dev.crash(), 4096, len);
        let mut new_sectors = 0;
        for sector in image.chunks(SECTOR as usize) {
            let whole_old = sector.iter().all(|&b| b == 0x11);
            let whole_new = sector.iter().all(|&b| b == 0x22);
            assert!(whole_old || whole_new, "seed {seed}: a sector is wholly old or new");
            new_sectors += usize::from(whole_new);
        }
        match new_sectors {
            0 => all_old += 1,
            n if n == sectors => all_new += 1,
            _ => torn += 1,
        }
    }
    assert!(all_old > 0 && torn > 0, "old {all_old} new {all_new} torn {torn}");
    // A single-sector write survives or not, both over many seeds.
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..100 {
        let dev = SimDevice::new(1 << 20, SECTOR, seed);
        dev.write_at(0, &filled(0x33, SECTOR as usize)).unwrap();
        if read(&dev.crash(), 0, SECTOR as usize)[0] == 0x33 {
            kept += 1
        } else {
            lost += 1
        }
    }
    assert!(kept > 0 && lost > 0, "kept {kept} lost {lost}");
}

#[test]
fn crashes_are_deterministic_and_shared_by_clones() {
    let image = |seed| {
        let dev = SimDevice::new(1 << 20, SECTOR, seed);
        let clone = dev.clone();
        for i in 0..16u64 {
            clone.write_at(i * 4096, &filled(i as u8 + 1, 4096)).unwrap();
        }
        assert_eq!(dev.write_count(), 16, "a clone shares the image and counters");
        let crashed = dev.crash();
        read(&crashed, 0, 16 * 4096).to_vec()
    };
    assert_eq!(image(42), image(42));
    assert_ne!(image(42), image(43));
}

#[test]
fn crash_image_is_a_fresh_device() {
    let dev = SimDevice::new(1 << 20, SECTOR, 1);
    dev.write_at(0, &filled(1, 4096)).unwrap();
    dev.flush().unwrap();
    dev.fail_after(0);
    let after = dev.crash();
    assert_eq!(after.flush_count(), 0);
    after.write_at(0, &filled(2, 4096)).unwrap();
    after.flush().unwrap();
    // A second crash after a flush keeps everything.
    assert!(read(&after.crash(), 0, 4096).iter().all(|&b| b == 2));
}

#[test]
fn bit_flips_at_rest() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.write_at(8192, &filled(0, 4096)).unwrap();
    dev.flush().unwrap();
    dev.flip_bit(8192 + 100, 3);
    let got = read(&dev, 8192, 4096);
    assert_eq!(got[100], 1 << 3);
    assert_eq!(got.iter().filter(|&&b| b != 0).count(), 1);
    // Also visible after a crash (it is in the durable image) and on unwritten space.
    assert_eq!(read(&dev.crash(), 8192, 4096)[100], 1 << 3);
    dev.flip_bit(500_000, 7);
    assert_eq!(read(&dev, 499_712, 4096)[500_000 - 499_712], 0x80);
}

#[test]
fn read_and_write_errors_on_ranges() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.write_at(0, &filled(9, 16384)).unwrap();
    dev.fail_reads_at(4096..4097);
    let mut buf = AlignedBuf::zeroed(4096, 4096);
    assert!(is_eio(&dev.read_at(4096, &mut buf).unwrap_err()));
    assert!(is_eio(&dev.read_at(0, &mut AlignedBuf::zeroed(8192, 4096)).unwrap_err()));
    dev.read_at(8192, &mut buf).unwrap();
    dev.fail_writes_at(12288..16384);
    let err = dev.write_at(12288, &filled(7, 4096)).unwrap_err();
    assert!(is_eio(&err), "{err}");
    assert!(read(&dev, 12288, 4096).iter().all(|&b| b == 9), "a failed write changes nothing");
    dev.write_at(8192, &filled(7, 4096)).unwrap();
    dev.clear_faults();
    dev.write_at(12288, &filled(7, 4096)).unwrap();
    dev.read_at(4096, &mut buf).unwrap();
}

#[test]
fn fail_after_countdown() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.fail_after(3);
    let data = filled(1, 4096);
    let two = [WriteOp { offset: 0, data: &data }, WriteOp { offset: 4096, data: &data }];
    dev.write_batch(&two).unwrap();
    dev.flush().unwrap();
    assert!(is_eio(&dev.write_at(8192, &data).unwrap_err()));
    assert!(is_eio(&dev.flush().unwrap_err()));
    assert!(is_eio(&dev.write_at(0, &data).unwrap_err()));
    assert_eq!((dev.write_count(), dev.flush_count()), (2, 1));
    assert!(read(&dev, 8192, 4096).iter().all(|&b| b == 0));
    dev.read_at(0, &mut AlignedBuf::zeroed(4096, 4096)).unwrap();
}

#[test]
fn misdirected_write() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.misdirect_next_write(65536);
    dev.write_at(0, &filled(5, 4096)).unwrap();
    assert!(read(&dev, 0, 4096).iter().all(|&b| b == 0), "the target address kept old data");
    assert!(read(&dev, 65536, 4096).iter().all(|&b| b == 5), "the data landed elsewhere");
    dev.write_at(0, &filled(6, 4096)).unwrap();
    assert!(read(&dev, 0, 4096).iter().all(|&b| b == 6), "only the next write is misdirected");
}

#[test]
fn counters_and_counting_wrapper() {
    let dev = CountingDevice::new(SimDevice::new(1 << 20, SECTOR, 0));
    let data = filled(1, 8192);
    let ops = [WriteOp { offset: 0, data: &data }, WriteOp { offset: 16384, data: &data[..4096] }];
    dev.write_batch(&ops).unwrap();
    dev.flush().unwrap();
    assert_eq!(dev.flush_count(), 1);
    assert_eq!(dev.write_batch_count(), 1);
    assert_eq!(dev.write_count(), 2);
    assert_eq!(dev.bytes_written(), 12288);
    assert_eq!(dev.inner().bytes_written(), 12288);
    assert_eq!(dev.inner().flush_count(), 1);
    // Refused batches are not counted.
    assert_eq!(dev.write_at(1, &data).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(dev.write_count(), 2);
    dev.reset();
    assert_eq!(dev.flush_count(), 0);
}

#[test]
fn sparse_large_device() {
    // 1 GiB simulated: only written pages cost memory, so this is instant and small.
    let dev = SimDevice::new(1 << 30, 4096, 0);
    dev.write_at((1 << 30) - 4096, &filled(3, 4096)).unwrap();
    dev.flush().unwrap();
    assert!(read(&dev, (1 << 30) - 4096, 4096).iter().all(|&b| b == 3));
    assert!(read(&dev, 1 << 29, 1 << 20).iter().all(|&b| b == 0));
    let crashed = dev.crash();
    assert_eq!(crashed.len_bytes(), 1 << 30);
}

#[test]
fn fail_next_flush_fails_once_and_keeps_writes_pending() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.write_at(0, &filled(1, 4096)).unwrap();
    dev.fail_next_flush();
    assert!(is_eio(&dev.flush().unwrap_err()));
    assert_eq!(dev.pending_write_count(), 1, "a failed flush makes nothing durable");
    assert_eq!(dev.fault_counts().flush_errors, 1);
    dev.flush().unwrap();
    assert_eq!(dev.pending_write_count(), 0);
}

#[test]
fn random_lost_and_misdirected_writes_are_recorded_as_damage() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.write_at(0, &filled(1, 4096)).unwrap();
    let lost = RandomFaults { write_lost_ppm: 1_000_000, ..RandomFaults::default() };
    dev.set_random_faults(lost, 1);
    dev.write_at(0, &filled(2, 4096)).unwrap();
    assert!(read(&dev, 0, 4096).iter().all(|&b| b == 1), "a lost write stores nothing");
    assert_eq!(dev.damage(), vec![0..4096]);
    let misdirected = RandomFaults { write_misdirected_ppm: 1_000_000, ..RandomFaults::default() };
    dev.set_random_faults(misdirected, 2);
    dev.write_at(8192, &filled(3, 4096)).unwrap();
    let damage = dev.damage();
    assert_eq!(damage.len(), 3, "{damage:?}");
    assert_eq!(damage[1], 8192..12288);
    let landed = damage[2].start;
    assert!(read(&dev, landed, 4096).iter().all(|&b| b == 3), "{damage:?}");
    let counts = dev.fault_counts();
    assert_eq!((counts.lost_writes, counts.misdirected_writes), (1, 1));
    // The record survives a crash; random faults do not.
    let after = dev.crash();
    assert_eq!(after.damage(), damage);
    after.write_at(16384, &filled(4, 4096)).unwrap();
    assert!(read(&after, 16384, 4096).iter().all(|&b| b == 4));
    dev.flip_bit(100, 0);
    assert_eq!(dev.damage().last(), Some(&(100..101)));
}

#[test]
fn random_read_errors_leave_data_intact() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.write_at(0, &filled(7, 4096)).unwrap();
    dev.set_random_faults(RandomFaults { read_eio_ppm: 500_000, ..RandomFaults::default() }, 3);
    let mut buf = AlignedBuf::zeroed(4096, 4096);
    let failed = (0..100).filter(|_| dev.read_at(0, &mut buf).is_err()).count();
    assert!((20..80).contains(&failed), "{failed} of 100 reads failed");
    assert_eq!(dev.fault_counts().read_errors, failed as u64);
    dev.set_random_faults(RandomFaults::default(), 0);
    assert!(read(&dev, 0, 4096).iter().all(|&b| b == 7));
}

#[test]
fn power_cut_takes_the_image_at_the_chosen_operation() {
    let dev = SimDevice::new(1 << 20, SECTOR, 0);
    dev.power_cut_after(2);
    dev.write_at(0, &filled(1, 4096)).unwrap();
    dev.flush().unwrap();
    assert!(dev.take_power_cut().is_none(), "two operations done, the cut comes before the third");
    dev.write_at(4096, &filled(2, 4096)).unwrap();
    dev.flush().unwrap();
    let image = dev.take_power_cut().expect("the cut happened");
    assert!(dev.take_power_cut().is_none(), "taken once");
    assert!(read(&image, 0, 4096).iter().all(|&b| b == 1), "flushed before the cut");
    assert!(read(&image, 4096, 4096).iter().all(|&b| b == 0), "written after the cut");
    assert!(read(&dev, 4096, 4096).iter().all(|&b| b == 2), "the device carries on");
}

fn _assert_send_sync() {
    fn is<T: Send + Sync + Clone>() {}
    is::<SimDevice>();
}
