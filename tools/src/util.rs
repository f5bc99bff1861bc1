//! Small helpers: sizes, free space, progress bars.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{CliError, Result};

/// Stores with more blocks than this get a block progress bar (on a terminal).
const PROGRESS_BLOCKS_MIN: u64 = 20_000;
/// Spinners redraw this often (their work reports no progress of its own).
const SPINNER_TICK: Duration = Duration::from_millis(120);

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

/// Whether progress is shown at all: only when stderr is a terminal (not in tests, pipes or
/// logs, where redraws would be noise).
pub fn show_progress() -> bool {
    std::io::stderr().is_terminal()
}

fn styled(bar: ProgressBar, template: &str, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// A progress bar over `total` blocks, hidden for small stores and when stderr is not a
/// terminal (tests, pipes).
pub fn progress(total: u64, what: &str) -> ProgressBar {
    if total < PROGRESS_BLOCKS_MIN || !show_progress() {
        return ProgressBar::hidden();
    }
    styled(ProgressBar::new(total), "{msg} [{bar:40}] {pos}/{len} blocks ({eta})", what)
}

/// A progress bar over `total` entries (dump, compact), hidden when stderr is not a terminal.
pub fn entries_bar(total: u64, what: &str) -> ProgressBar {
    if !show_progress() {
        return ProgressBar::hidden();
    }
    styled(
        ProgressBar::new(total),
        "{msg} [{bar:40}] {human_pos}/{human_len} entries ({eta})",
        what,
    )
}

/// A progress bar over `total` input bytes (load from a file), or a spinner counting bytes
/// when the total is unknown (a pipe).
pub fn bytes_bar(total: Option<u64>, what: &str) -> ProgressBar {
    if !show_progress() {
        return ProgressBar::hidden();
    }
    match total {
        Some(total) => {
            styled(ProgressBar::new(total), "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})", what)
        }
        None => spinner_with(ProgressBar::new_spinner(), "{msg} {spinner} {bytes} read", what),
    }
}

/// A spinner for work that reports no progress (format's allocation of the file).
pub fn spinner(what: &str) -> ProgressBar {
    if !show_progress() {
        return ProgressBar::hidden();
    }
    spinner_with(ProgressBar::new_spinner(), "{msg} {spinner} {elapsed}", what)
}

fn spinner_with(bar: ProgressBar, template: &str, what: &str) -> ProgressBar {
    let bar = styled(bar, template, what);
    bar.enable_steady_tick(SPINNER_TICK);
    bar
}

/// Bytes the caller may still allocate on the filesystem that holds `dir` (`statvfs`'s
/// `f_bavail * f_frsize`: what an unprivileged writer gets).
pub fn free_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| CliError::new(format!("{}: path holds a NUL byte", dir.display())))?;
    // SAFETY: `statvfs` is plain old data, so all zeros is a valid value to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `st` is a
    // valid, exclusively borrowed `statvfs` the call fills in.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(CliError::io(dir, std::io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between libc targets
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
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
