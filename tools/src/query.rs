//! `arbor get` and `arbor scan`: reading entries of one tree (shared lock, like `dump`).

use std::io::Write;
use std::ops::Bound;
use std::path::Path;
use std::process::ExitCode;

use serde_json::{Map, Value};

use crate::device::open_db_readonly;
use crate::error::{CliError, Result, EXIT_PROBLEMS};
use crate::show::{parse_arg, put_json, text};

/// How `get` and `scan` take their arguments and print.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Arguments are hexadecimal.
    pub hex: bool,
    /// One JSON object per entry (a line each) instead of `key<TAB>value`.
    pub json: bool,
}

/// The bounds of `scan`, as given on the command line.
#[derive(Debug, Default)]
pub struct ScanArgs {
    pub prefix: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u64>,
}

fn tree(db: &arbor::Db, path: &Path, name: &str) -> Result<arbor::Tree> {
    let snap = db.snapshot().map_err(|e| CliError::store(path, e))?;
    snap.tree(name)
        .map_err(|e| CliError::store(path, e))?
        .ok_or_else(|| CliError::new(format!("the store has no tree named {name:?}")))
}

fn entry_line(key: &[u8], value: &[u8], json: bool) -> String {
    if json {
        let mut obj = Map::new();
        put_json(&mut obj, "key", key);
        put_json(&mut obj, "value", value);
        return Value::Object(obj).to_string();
    }
    format!("{}\t{}", text(key), text(value))
}

/// Prints the value of KEY; exit 1 (and nothing on stdout) when the key is absent.
pub fn get(path: &Path, name: &str, key: &str, style: Style) -> Result<ExitCode> {
    let key = parse_arg(key, style.hex, "KEY")?;
    let db = open_db_readonly(path)?;
    let t = tree(&db, path, name)?;
    match t.get(&key).map_err(|e| CliError::store(path, e))? {
        Some(value) if style.json => println!("{}", entry_line(&key, &value, true)),
        Some(value) => println!("{}", text(&value)),
        None => {
            eprintln!("arbor: no key {} in tree {name:?}", text(&key));
            return Ok(ExitCode::from(EXIT_PROBLEMS as u8));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The smallest key greater than every key that starts with `prefix`; `None` when there is
/// none (the prefix is empty or all 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// `[start, end)`: `--from` and the prefix bound the start (the larger wins), `--to` and the
/// prefix's end bound the end (the smaller wins).
/// A scan's start (inclusive) and end (exclusive); `None` is unbounded.
type KeyBounds = (Option<Vec<u8>>, Option<Vec<u8>>);

fn bounds(args: &ScanArgs, hex: bool) -> Result<KeyBounds> {
    let arg = |a: &Option<String>, what| a.as_deref().map(|s| parse_arg(s, hex, what)).transpose();
    let prefix = arg(&args.prefix, "--prefix")?;
    let mut start = arg(&args.from, "--from")?;
    let mut end = arg(&args.to, "--to")?;
    if let Some(p) = prefix {
        start = Some(start.map_or(p.clone(), |s| s.max(p.clone())));
        if let Some(pe) = prefix_end(&p) {
            end = Some(end.map_or(pe.clone(), |e| e.min(pe)));
        }
    }
    Ok((start, end))
}

/// Prints the entries of a tree in key order, within the bounds, up to `--limit`.
pub fn scan(path: &Path, name: &str, args: &ScanArgs, style: Style) -> Result<()> {
    let (start, end) = bounds(args, style.hex)?;
    let db = open_db_readonly(path)?;
    let t = tree(&db, path, name)?;
    if matches!((&start, &end), (Some(s), Some(e)) if s >= e) {
        return Ok(());
    }
    let lower = start.as_deref().map_or(Bound::Unbounded, Bound::Included);
    let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let range = t.range((lower, upper)).map_err(|e| CliError::store(path, e))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for item in range.take(usize::try_from(args.limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX)) {
        let (k, v) = item.map_err(|e| CliError::store(path, e))?;
        writeln!(out, "{}", entry_line(&k, &v, style.json))?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
        let args = ScanArgs {
            prefix: Some("b".into()),
            from: Some("a".into()),
            to: Some("bz".into()),
            limit: None,
        };
        assert_eq!(bounds(&args, false).unwrap(), (Some(b"b".to_vec()), Some(b"bz".to_vec())));
    }
}
