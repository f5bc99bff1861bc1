//! The byte stream of a Raft snapshot: written record by record while an Arbor snapshot's
//! trees are iterated, read record by record while they are installed, so neither side holds
//! more than one key and value in memory.
//!
//! ```text
//! header   magic "ARBRSNP1" (8) | meta_bytes u32 | meta (bincode of openraft's SnapshotMeta)
//! records  tag 1 (tree)  u8 | name_bytes u16 | name (UTF-8; the pairs that follow are its)
//!          tag 2 (pair)  u8 | key_bytes u32 | key | value_bytes u32 | value
//! trailer  tag 0 (end)   u8 | pair_count u64 | crc32 u32 of every byte before it
//! ```
//!
//! Integers are little-endian. The bytes come from another node or from a file: every length
//! is checked against a named limit, and a bad field is an `InvalidData` error, never a panic.

use std::io::{self, Read, Write};

use crc32fast::Hasher;
use openraft::BasicNode;
use openraft::SnapshotMeta;

use crate::NodeId;

pub(crate) const MAGIC: &[u8; 8] = b"ARBRSNP1";
/// The header's snapshot metadata (a membership: a few node ids and addresses).
pub(crate) const META_BYTES_MAX: u32 = 1 << 20;
/// Keys above Arbor's largest (a quarter of its largest, 64 KiB, block) cannot be stored.
pub(crate) const KEY_BYTES_MAX: u32 = 1 << 14;

const TAG_END: u8 = 0;
const TAG_TREE: u8 = 1;
const TAG_PAIR: u8 = 2;

pub(crate) type Meta = SnapshotMeta<NodeId, BasicNode>;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("raft snapshot stream: {}", what.into()))
}

/// Writes the stream, hashing what it writes.
pub(crate) struct StreamWriter<W: Write> {
    out: W,
    crc: Hasher,
    pairs: u64,
}

impl<W: Write> StreamWriter<W> {
    pub(crate) fn new(out: W, meta: &Meta) -> io::Result<StreamWriter<W>> {
        let meta = bincode::serialize(meta).map_err(|e| invalid(e.to_string()))?;
        let meta_bytes = u32::try_from(meta.len()).map_err(|_| invalid("meta too large"))?;
        if meta_bytes > META_BYTES_MAX {
            return Err(invalid("meta too large"));
        }
        let mut w = StreamWriter { out, crc: Hasher::new(), pairs: 0 };
        w.put(MAGIC)?;
        w.put(&meta_bytes.to_le_bytes())?;
        w.put(&meta)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }

    /// Starts the records of tree `name`.
    pub(crate) fn tree(&mut self, name: &str) -> io::Result<()> {
        let len = u16::try_from(name.len()).map_err(|_| invalid("tree name too long"))?;
        self.put(&[TAG_TREE])?;
        self.put(&len.to_le_bytes())?;
        self.put(name.as_bytes())
    }

    pub(crate) fn pair(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let key_bytes = u32::try_from(key.len()).map_err(|_| invalid("key too long"))?;
        if key_bytes > KEY_BYTES_MAX {
            return Err(invalid(format!("key of {key_bytes} bytes")));
        }
        let value_bytes = u32::try_from(value.len()).map_err(|_| invalid("value too long"))?;
        self.put(&[TAG_PAIR])?;
        self.put(&key_bytes.to_le_bytes())?;
        self.put(key)?;
        self.put(&value_bytes.to_le_bytes())?;
        self.put(value)?;
        self.pairs += 1;
        Ok(())
    }

    /// Writes the trailer; returns the output and the number of pairs.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        self.put(&[TAG_END])?;
        let pairs = self.pairs;
        self.put(&pairs.to_le_bytes())?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        self.out.flush()?;
        Ok((self.out, pairs))
    }
}

/// One record of the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Tree(String),
    Pair(Vec<u8>, Vec<u8>),
}

/// Reads the stream, checking its trailer at the end.
pub(crate) struct StreamReader<R: Read> {
    input: R,
    crc: Hasher,
    pairs: u64,
    ended: bool,
}

impl<R: Read> StreamReader<R> {
    /// Reads the header; returns the reader and the snapshot's metadata.
    pub(crate) fn new(input: R) -> io::Result<(StreamReader<R>, Meta)> {
        let mut r = StreamReader { input, crc: Hasher::new(), pairs: 0, ended: false };
        let mut magic = [0u8; 8];
        r.take_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid("bad magic"));
        }
        let meta_bytes = r.u32()?;
        if meta_bytes > META_BYTES_MAX {
            return Err(invalid(format!("meta of {meta_bytes} bytes")));
        }
        let meta = r.bytes(meta_bytes)?;
        let meta: Meta = bincode::deserialize(&meta).map_err(|e| invalid(e.to_string()))?;
        Ok((r, meta))
    }

    /// The input, positioned after the last record read.
    pub(crate) fn into_inner(self) -> R {
        self.input
    }

    fn take_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.input.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid("truncated"),
            _ => e,
        })?;
        self.crc.update(buf);
        Ok(())
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.take_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// `len` bytes. A length that lies about the stream ends in `truncated` once the stream
    /// ends, with no allocation of the claimed size up front.
    fn bytes(&mut self, len: u32) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let got = (&mut self.input).take(u64::from(len)).read_to_end(&mut out)?;
        if got != len as usize {
            return Err(invalid("truncated"));
        }
        self.crc.update(&out);
        Ok(out)
    }

    /// The next record; `None` after the trailer, once it checked out.
    pub(crate) fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.ended {
            return Ok(None);
        }
        let mut tag = [0u8; 1];
        self.take_exact(&mut tag)?;
        match tag[0] {
            TAG_TREE => {
                let mut len = [0u8; 2];
                self.take_exact(&mut len)?;
                let name = self.bytes(u32::from(u16::from_le_bytes(len)))?;
                let name = String::from_utf8(name).map_err(|_| invalid("tree name not UTF-8"))?;
                Ok(Some(Record::Tree(name)))
            }
            TAG_PAIR => {
                let key_bytes = self.u32()?;
                if key_bytes > KEY_BYTES_MAX {
                    return Err(invalid(format!("key of {key_bytes} bytes")));
                }
                let key = self.bytes(key_bytes)?;
                let value_bytes = self.u32()?;
                let value = self.bytes(value_bytes)?;
                self.pairs += 1;
                Ok(Some(Record::Pair(key, value)))
            }
            TAG_END => {
                self.check_trailer()?;
                self.ended = true;
                Ok(None)
            }
            t => Err(invalid(format!("unknown record tag {t}"))),
        }
    }

    fn check_trailer(&mut self) -> io::Result<()> {
        let mut count = [0u8; 8];
        self.take_exact(&mut count)?;
        let count = u64::from_le_bytes(count);
        if count != self.pairs {
            return Err(invalid(format!(
                "trailer counts {count} pairs, stream had {}",
                self.pairs
            )));
        }
        let expected = self.crc.clone().finalize();
        let mut crc = [0u8; 4];
        self.input.read_exact(&mut crc).map_err(|_| invalid("truncated"))?;
        let got = u32::from_le_bytes(crc);
        if got != expected {
            return Err(invalid(format!("crc32 {got:#010x}, computed {expected:#010x}")));
        }
        Ok(())
    }
}

/// Copies every byte read through it to `copy` (an installed snapshot is kept as the node's
/// current snapshot while it is applied).
pub(crate) struct Tee<R, W> {
    pub(crate) input: R,
    pub(crate) copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.input.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = StreamWriter::new(Vec::new(), &Meta::default()).unwrap();
        w.tree("kv").unwrap();
        w.pair(b"a", b"1").unwrap();
        w.pair(b"b", &[7u8; 300]).unwrap();
        w.finish().unwrap().0
    }

    fn read_all(bytes: &[u8]) -> io::Result<Vec<Record>> {
        let (mut r, _) = StreamReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let recs = read_all(&sample()).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0], Record::Tree("kv".into()));
        assert_eq!(recs[1], Record::Pair(b"a".to_vec(), b"1".to_vec()));
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_an_error() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(read_all(&bad).is_err(), "flip at {i} accepted");
            assert!(read_all(&good[..i]).is_err(), "truncation at {i} accepted");
        }
    }
}
