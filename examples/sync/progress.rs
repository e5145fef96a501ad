//! How far a run is: a bar on a terminal, plain lines now and then elsewhere, or nothing.

use d365_connector::SyncProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where progress goes.
pub enum Progress {
    /// Nothing (`--quiet`).
    Quiet,
    /// A bar on standard error, a terminal.
    Bar(ProgressBar),
    /// A line every `every` (and after the first batch) to the command's standard error.
    Lines {
        /// The time between two lines.
        every: Duration,
        /// When the run started.
        started: Instant,
        /// When the last line was printed (`None`: not yet).
        last: Mutex<Option<Instant>>,
    },
}

impl Progress {
    /// Progress for a run: nothing when `quiet`, a bar when standard error is a terminal,
    /// otherwise a line every `every`.
    pub fn new(quiet: bool, terminal: bool, every: Duration) -> Self {
        if quiet {
            return Self::Quiet;
        }
        if terminal {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {human_pos}/{human_len} read, {msg} ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            return Self::Bar(bar);
        }
        Self::Lines {
            every,
            started: Instant::now(),
            last: Mutex::new(None),
        }
    }

    /// Shows `progress`; plain lines go to `stderr`.
    pub fn update(&self, progress: &SyncProgress, stderr: &mut dyn Write) {
        let counts = &progress.counts;
        let done = format!("{} written, {} failed", counts.written(), counts.failed);
        match self {
            Self::Quiet => {}
            Self::Bar(bar) => {
                bar.set_prefix(progress.job.clone());
                if let Some(expected) = counts.expected {
                    bar.set_length(expected.max(counts.read));
                }
                bar.set_position(counts.read);
                bar.set_message(done);
            }
            Self::Lines {
                every,
                started,
                last,
            } => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.is_some_and(|at| at.elapsed() < *every) {
                    return;
                }
                *last = Some(Instant::now());
                let _ = writeln!(
                    stderr,
                    "{}: {}, {done}{}",
                    progress.job,
                    read_so_far(counts.read, counts.expected),
                    rate_and_eta(counts.read, counts.expected, started.elapsed())
                );
            }
        }
    }

    /// Takes the bar off the terminal, so the report follows on a clean line.
    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// `read 1200 of about 40123 (3%)`, or `read 1200` without an expected count.
fn read_so_far(read: u64, expected: Option<u64>) -> String {
    match expected {
        Some(expected) if expected > 0 => format!(
            "read {read} of about {expected} ({}%)",
            (read * 100 / expected).min(100)
        ),
        _ => format!("read {read}"),
    }
}

/// `, 350 records/s, about 1m52s left` (the time left only with an expected count).
fn rate_and_eta(read: u64, expected: Option<u64>, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 || read == 0 {
        return String::new();
    }
    let rate = read as f64 / seconds;
    let mut text = format!(", {rate:.0} records/s");
    if let Some(left) = expected.map(|e| e.saturating_sub(read)) {
        let left = Duration::from_secs_f64(left as f64 / rate);
        text.push_str(&format!(
            ", about {}m{:02}s left",
            left.as_secs() / 60,
            left.as_secs() % 60
        ));
    }
    text
}
