//! Small helpers: sizes, progress bars.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{CliError, Result};

/// Stores with more blocks than this get a progress bar (on a terminal).
const PROGRESS_BLOCKS_MIN: u64 = 20_000;

/// "64M", "1G", "4096": binary units, K/M/G/T (case-insensitive, optional trailing "iB"/"B").
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let stem = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, shift) = match stem.chars().last() {
        Some('k') => (&stem[..stem.len() - 1], 10),
        Some('m') => (&stem[..stem.len() - 1], 20),
        Some('g') => (&stem[..stem.len() - 1], 30),
        Some('t') => (&stem[..stem.len() - 1], 40),
        _ => (stem, 0),
    };
    let n: u64 = digits.trim().parse().map_err(|_| CliError::new(format!("bad size {text:?}")))?;
    n.checked_mul(1u64 << shift).ok_or_else(|| CliError::new(format!("size {text:?} is too large")))
}

/// "48.0 KiB", "1.5 GiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A progress bar over `total` blocks, hidden for small stores and when stderr is not a
/// terminal (tests, pipes).
pub fn progress(total: u64, what: &str) -> ProgressBar {
    if total < PROGRESS_BLOCKS_MIN || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} blocks ({eta})")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(human(512), "512 B");
        assert_eq!(human(48 << 10), "48.0 KiB");
    }
}
