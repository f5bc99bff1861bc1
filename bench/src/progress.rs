//! Progress bars on stderr for the long phases (hidden when stderr is not a terminal).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Operations between progress updates inside timed loops: keeps the bar's cost out of the
/// measurement (one atomic add per chunk).
pub const CHUNK: usize = 4096;

/// A bar over `len` steps, labelled with the engine and the phase.
pub fn bar(engine: &str, phase: &str, len: u64) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:>5} {msg:<22} [{bar:30}] {human_pos}/{human_len} {elapsed}",
    )
    .expect("static template")
    .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_prefix(engine.to_string())
        .with_message(phase.to_string())
}

/// A spinner for one-transaction phases, whose progress the engine does not report.
pub fn spinner(engine: &str, phase: &str) -> ProgressBar {
    let style = ProgressStyle::with_template("{prefix:>5} {msg:<22} {spinner} {elapsed}")
        .expect("static template");
    let pb = ProgressBar::new_spinner()
        .with_style(style)
        .with_prefix(engine.to_string())
        .with_message(phase.to_string());
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}
