//! `arbor dump --format text|jsonl`: readable dumps (docs/dump-format.md, "Readable
//! formats"). Keys and values follow `show`'s rule. `load` reads only the binary format,
//! which is exact and checksummed; these are for people and for tools like `jq`.
//!
//! ```text
//! text   tree "users"              a tree starts (name JSON-quoted; the line has no tab)
//!        alice<TAB>admin           an entry of the last tree (exactly one tab)
//! jsonl  {"tree":"users"}                                  a tree starts
//!        {"key":"alice","tree":"users","value":"admin"}    an entry, self-contained
//! ```

use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::dumpfmt::DumpWriter;
use crate::show::{put_json, text};

/// The formats `dump` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpFormat {
    /// The documented binary format (docs/dump-format.md), exact and checksummed; `load`
    /// reads it.
    Binary,
    /// `tree "NAME"` lines, then `key<TAB>value` lines.
    Text,
    /// One JSON object per line.
    Jsonl,
}

/// Where a dump's records go, in any format.
pub trait DumpSink {
    fn tree(&mut self, name: &str) -> io::Result<()>;
    fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()>;
    /// Ends the dump and flushes; returns (trees, entries).
    fn finish(self: Box<Self>) -> io::Result<(u64, u64)>;
}

impl<W: Write> DumpSink for DumpWriter<W> {
    fn tree(&mut self, name: &str) -> io::Result<()> {
        DumpWriter::tree(self, name)
    }
    fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        DumpWriter::entry(self, key, value)
    }
    fn finish(self: Box<Self>) -> io::Result<(u64, u64)> {
        DumpWriter::finish(*self)
    }
}

/// The text and JSON-lines writers.
pub struct ReadableWriter<W: Write> {
    out: W,
    jsonl: bool,
    tree: String,
    trees: u64,
    entries: u64,
}

impl<W: Write> ReadableWriter<W> {
    pub fn new(out: W, jsonl: bool) -> ReadableWriter<W> {
        ReadableWriter { out, jsonl, tree: String::new(), trees: 0, entries: 0 }
    }
}

impl<W: Write> DumpSink for ReadableWriter<W> {
    fn tree(&mut self, name: &str) -> io::Result<()> {
        self.trees += 1;
        self.tree = name.to_string();
        let quoted = Value::from(name).to_string();
        if self.jsonl {
            writeln!(self.out, "{{\"tree\":{quoted}}}")
        } else {
            writeln!(self.out, "tree {quoted}")
        }
    }

    fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.entries += 1;
        if !self.jsonl {
            return writeln!(self.out, "{}\t{}", text(key), text(value));
        }
        let mut obj = Map::new();
        obj.insert("tree".into(), Value::from(self.tree.as_str()));
        put_json(&mut obj, "key", key);
        put_json(&mut obj, "value", value);
        writeln!(self.out, "{}", Value::Object(obj))
    }

    fn finish(mut self: Box<Self>) -> io::Result<(u64, u64)> {
        self.out.flush()?;
        Ok((self.trees, self.entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(jsonl: bool) -> String {
        let mut buf = Vec::new();
        let mut w: Box<dyn DumpSink + '_> = Box::new(ReadableWriter::new(&mut buf, jsonl));
        w.tree("t\"1").unwrap();
        w.entry(b"k", &[0, 1]).unwrap();
        w.tree("empty").unwrap();
        assert_eq!(w.finish().unwrap(), (2, 1));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn text_and_jsonl() {
        assert_eq!(write(false), "tree \"t\\\"1\"\nk\t0x0001\ntree \"empty\"\n");
        let lines: Vec<Value> =
            write(true).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0], serde_json::json!({"tree": "t\"1"}));
        assert_eq!(lines[1], serde_json::json!({"tree": "t\"1", "key": "k", "value_hex": "0001"}));
        assert_eq!(lines[2], serde_json::json!({"tree": "empty"}));
    }
}
