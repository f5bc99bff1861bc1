//! The dump interchange format (`docs/dump-format.md`): length-prefixed binary records
//! between a header and a trailer that carries the counts and a crc32 of everything before
//! it. All integers little-endian.
//!
//! ```text
//! header   "ARBORDMP" (8) | version u32 = 1 | flags u32 = 0
//! tree     'T' | name_len u32 | name bytes (UTF-8)          starts a tree (possibly empty)
//! entry    'K' | key_len u32 | value_len u64 | key | value   belongs to the last tree
//! trailer  'E' | trees u64 | entries u64 | crc32 u32          crc32 of every byte before it
//! ```

use std::io::{self, Read, Write};

use arbor_format::constants::VALUE_BYTES_MAX;

pub const MAGIC: &[u8; 8] = b"ARBORDMP";
pub const VERSION: u32 = 1;
const TAG_TREE: u8 = b'T';
const TAG_ENTRY: u8 = b'K';
const TAG_END: u8 = b'E';
/// Longest tree name accepted (the engine's key limit at the largest block size).
const NAME_BYTES_MAX: u32 = 16 * 1024;
/// Longest key accepted (the engine refuses what its block size cannot hold).
const KEY_BYTES_MAX: u32 = 16 * 1024;

/// A writer that keeps the running crc of everything it wrote.
pub struct DumpWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    trees: u64,
    entries: u64,
}

impl<W: Write> DumpWriter<W> {
    pub fn new(out: W) -> io::Result<DumpWriter<W>> {
        let mut w = DumpWriter { out, crc: crc32fast::Hasher::new(), trees: 0, entries: 0 };
        w.put(MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        w.put(&0u32.to_le_bytes())?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    pub fn tree(&mut self, name: &str) -> io::Result<()> {
        self.trees += 1;
        self.put(&[TAG_TREE])?;
        self.put(&len_u32(name.len())?.to_le_bytes())?;
        self.put(name.as_bytes())
    }

    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.entries += 1;
        self.put(&[TAG_ENTRY])?;
        self.put(&len_u32(key.len())?.to_le_bytes())?;
        self.put(&(value.len() as u64).to_le_bytes())?;
        self.put(key)?;
        self.put(value)
    }

    /// Writes the trailer and flushes; returns (trees, entries).
    pub fn finish(mut self) -> io::Result<(u64, u64)> {
        self.put(&[TAG_END])?;
        let (trees, entries) = (self.trees, self.entries);
        self.put(&trees.to_le_bytes())?;
        self.put(&entries.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok((trees, entries))
    }
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| invalid(format!("length {len} does not fit the format")))
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One record read from a dump.
#[derive(Debug, PartialEq, Eq)]
pub enum Record {
    Tree(String),
    Entry(Vec<u8>, Vec<u8>),
    /// The trailer verified: (trees, entries). Nothing may follow it.
    End(u64, u64),
}

/// A streaming reader that checks the header, every length and, at the end, the counts and
/// the crc. Records are returned as they are read: a caller that applies them must treat
/// the stream as untrusted until `Record::End` (`load` does so by committing only then).
pub struct DumpReader<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    trees: u64,
    entries: u64,
    in_tree: bool,
    offset: u64,
}

impl<R: Read> DumpReader<R> {
    pub fn new(input: R) -> io::Result<DumpReader<R>> {
        let mut r = DumpReader {
            input,
            crc: crc32fast::Hasher::new(),
            trees: 0,
            entries: 0,
            in_tree: false,
            offset: 0,
        };
        let mut magic = [0u8; 8];
        r.take(&mut magic, "header")?;
        if &magic != MAGIC {
            return Err(invalid("not an Arbor dump (bad magic)"));
        }
        let version = r.u32("header")?;
        if version != VERSION {
            return Err(invalid(format!(
                "dump format version {version}; this tool reads {VERSION}"
            )));
        }
        let flags = r.u32("header")?;
        if flags != 0 {
            return Err(invalid(format!("unknown dump flags {flags:#x}")));
        }
        Ok(r)
    }

    /// Bytes read so far (progress).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn take(&mut self, buf: &mut [u8], what: &str) -> io::Result<()> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                invalid(format!("dump truncated in the {what} at byte {}", self.offset))
            }
            _ => e,
        })?;
        self.crc.update(buf);
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.take(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> io::Result<u64> {
        let mut b = [0u8; 8];
        self.take(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads `len` bytes without trusting `len` for an allocation up front (a corrupt length
    /// fails at the end of the stream, not in the allocator).
    fn bytes(&mut self, len: u64, what: &str) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let got = (&mut self.input).take(len).read_to_end(&mut out)?;
        if (got as u64) < len {
            return Err(invalid(format!("dump truncated in a {what} at byte {}", self.offset)));
        }
        self.crc.update(&out);
        self.offset += len;
        Ok(out)
    }

    pub fn next_record(&mut self) -> io::Result<Record> {
        let at = self.offset;
        let mut tag = [0u8; 1];
        self.take(&mut tag, "record tag")?;
        match tag[0] {
            TAG_TREE => {
                let len = self.u32("tree record")?;
                if len > NAME_BYTES_MAX {
                    return Err(invalid(format!("tree name of {len} bytes at byte {at}")));
                }
                let name = self.bytes(u64::from(len), "tree name")?;
                let name = String::from_utf8(name)
                    .map_err(|_| invalid(format!("tree name at byte {at} is not UTF-8")))?;
                self.trees += 1;
                self.in_tree = true;
                Ok(Record::Tree(name))
            }
            TAG_ENTRY => {
                if !self.in_tree {
                    return Err(invalid(format!("entry before any tree record at byte {at}")));
                }
                let key_len = self.u32("entry")?;
                let value_len = self.u64("entry")?;
                if key_len > KEY_BYTES_MAX || value_len > VALUE_BYTES_MAX {
                    return Err(invalid(format!(
                        "entry at byte {at}: key of {key_len} or value of {value_len} bytes \
                         is too large"
                    )));
                }
                let key = self.bytes(u64::from(key_len), "key")?;
                let value = self.bytes(value_len, "value")?;
                self.entries += 1;
                Ok(Record::Entry(key, value))
            }
            TAG_END => self.trailer(at),
            other => Err(invalid(format!("unknown record tag {other:#04x} at byte {at}"))),
        }
    }

    fn trailer(&mut self, at: u64) -> io::Result<Record> {
        let trees = self.u64("trailer")?;
        let entries = self.u64("trailer")?;
        let computed = self.crc.clone().finalize();
        let mut stored = [0u8; 4];
        self.input.read_exact(&mut stored).map_err(|_| invalid("dump truncated in the trailer"))?;
        let stored = u32::from_le_bytes(stored);
        if stored != computed {
            return Err(invalid(format!(
                "dump checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        if (trees, entries) != (self.trees, self.entries) {
            return Err(invalid(format!(
                "trailer at byte {at} counts {trees} trees and {entries} entries; \
                 the dump holds {} and {}",
                self.trees, self.entries
            )));
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(invalid("bytes after the dump's trailer"));
        }
        Ok(Record::End(trees, entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = DumpWriter::new(&mut buf).unwrap();
        w.tree("a").unwrap();
        w.entry(b"", b"").unwrap();
        w.entry(&[0, 255, 1], &[7; 1000]).unwrap();
        w.tree("empty").unwrap();
        assert_eq!(w.finish().unwrap(), (2, 2));
        buf
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<Record>> {
        let mut r = DumpReader::new(bytes)?;
        let mut out = Vec::new();
        loop {
            let rec = r.next_record()?;
            let end = matches!(rec, Record::End(..));
            out.push(rec);
            if end {
                return Ok(out);
            }
        }
    }

    #[test]
    fn round_trip() {
        let recs = read_all(&sample()).unwrap();
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[0], Record::Tree("a".into()));
        assert_eq!(recs[1], Record::Entry(vec![], vec![]));
        assert_eq!(recs[4], Record::End(2, 2));
    }

    #[test]
    fn every_flip_and_truncation_is_caught() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(read_all(&bad).is_err(), "flip at byte {i} accepted");
            assert!(read_all(&good[..i]).is_err(), "truncation at {i} accepted");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(read_all(&longer).is_err());
    }
}
