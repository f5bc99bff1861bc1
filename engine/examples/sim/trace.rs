//! The run's trace: every step's action and outcome, folded into one FNV-1a hash (printed
//! at the end, so a second run of the same seed can be checked for determinism), and
//! printed line by line with `--trace`.

use std::fmt::{self, Write};

pub struct Trace {
    hash: u64,
    print: bool,
    line: String,
    pub step: u64,
}

/// Printed trace lines are cut to this length (the hash covers the whole line).
const LINE_CHARS_SHOWN: usize = 200;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    pub fn new(print: bool) -> Trace {
        Trace { hash: FNV_OFFSET, print, line: String::new(), step: 0 }
    }

    /// Records one event; `args` must hold only values the seed determines (no
    /// addresses of heap objects, no timings).
    pub fn event(&mut self, args: fmt::Arguments<'_>) {
        self.line.clear();
        let _ = write!(self.line, "{} ", self.step);
        let _ = self.line.write_fmt(args);
        for b in self.line.bytes().chain([b'\n']) {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        if self.print {
            let shown: String = self.line.chars().take(LINE_CHARS_SHOWN).collect();
            println!("  {shown}");
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// Records an event: `ev!(trace, "insert {} -> {}", k, v)`.
#[macro_export]
macro_rules! ev {
    ($trace:expr, $($arg:tt)*) => {
        $trace.event(format_args!($($arg)*))
    };
}
