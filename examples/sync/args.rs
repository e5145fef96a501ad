//! The command line, parsed with clap and checked before anything is opened.

use clap::Parser;
use d365_connector::{ClientOptions, Parallelism};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What each exit code means, shown by `--help`.
const EXIT_CODES: &str = "Exit codes:
  0    Success or PartialSuccess (some records failed; see --errors)
  1    Failed: the run stopped on an error, or every record failed
  2    Bad input: arguments, job file, environment, mapping, paths, a state made for another
       job, or another run holding the lock
  130  Cancelled by SIGINT (Ctrl-C); the checkpoint of the last batch written is saved
  143  Cancelled by SIGTERM; the checkpoint of the last batch written is saved

Logs: RUST_LOG=d365_connector=debug prints the job, page and request spans on stderr.";

/// Runs one sync job against a Dynamics 365 instance (sign-in from the D365_* variables).
#[derive(Debug, Parser)]
#[command(name = "sync", version, after_help = EXIT_CODES)]
pub struct Args {
    /// The job file (JSON; see the job file format in the README).
    #[arg(long, value_name = "JOB.json")]
    pub job: PathBuf,
    /// Resume from the checkpoint saved in this file, and save it there after every batch.
    #[arg(long, value_name = "STATE.json")]
    pub state: Option<PathBuf>,
    /// Append the operations as JSON Lines to this file, device or pipe (standard output when
    /// absent).
    #[arg(long, value_name = "OUT.jsonl")]
    pub out: Option<PathBuf>,
    /// Append the records that failed as JSON Lines (kept across runs).
    #[arg(long, value_name = "ERRORS.jsonl")]
    pub errors: Option<PathBuf>,
    /// Write into the job's target table of this database, with the checkpoint in it
    /// (sqlite://PATH or postgres://USER@HOST:PORT/DB); replaces --state and --out.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// The time one request may take, in seconds [default: 120].
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub request_timeout: Option<Duration>,
    /// Partitions a first read runs at once: `auto` or a number; overrides the job file's
    /// `source.parallelism`.
    #[arg(long, value_name = "auto|N", value_parser = parallelism)]
    pub parallelism: Option<Parallelism>,
    /// Read from the beginning, replacing the checkpoint this job has in --state, even one
    /// made for another table, or a state file that holds only other jobs' checkpoints.
    #[arg(long)]
    pub force_resync: bool,
    /// Check the job, the environment and the paths, read the first page and print its first
    /// mapped records; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Show no progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Seconds between progress lines when standard error is not a terminal.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = seconds_or_zero)]
    pub progress_every: Duration,
}

impl Args {
    /// Parses the arguments (without the program name). `Err` holds the exit code and what
    /// to print: 0 and the text for `--help` and `--version`, 2 and the usage error otherwise.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, (i32, String)> {
        let args = Self::try_parse_from(std::iter::once("sync".to_owned()).chain(args))
            .map_err(|e| (e.exit_code(), e.render().to_string()))?;
        args.check()?;
        Ok(args)
    }

    /// The options the connection's requests are sent with.
    pub fn client_options(&self) -> ClientOptions {
        let options = ClientOptions::default();
        match self.request_timeout {
            Some(timeout) => options.with_request_timeout(timeout),
            None => options,
        }
    }

    /// Refuses flags that cannot go together and two flags naming the same file.
    fn check(&self) -> Result<(), (i32, String)> {
        let bad = |message: String| (super::EXIT_BAD_INPUT, message);
        if self.db.is_some() && (self.state.is_some() || self.out.is_some()) {
            return Err(bad(
                "--db keeps the records and the checkpoint in the database; leave out --state and --out"
                    .to_owned(),
            ));
        }
        let named: Vec<(&str, &Path)> = [
            ("--job", Some(&self.job)),
            ("--state", self.state.as_ref()),
            ("--out", self.out.as_ref()),
            ("--errors", self.errors.as_ref()),
        ]
        .into_iter()
        .filter_map(|(flag, path)| Some((flag, path?.as_path())))
        .collect();
        for (i, (flag, path)) in named.iter().enumerate() {
            for (other, other_path) in &named[i + 1..] {
                if same_file(path, other_path) {
                    return Err(bad(format!(
                        "{flag} and {other} both name {}; each needs a file of its own (one would overwrite the other)",
                        path.display()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Whether `a` and `b` name the same file (through links, `.` and `..` too), existing or not.
fn same_file(a: &Path, b: &Path) -> bool {
    resolved(a) == resolved(b)
}

/// `path` made absolute with links resolved: the file itself when it exists, else its folder
/// joined with its name.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match (folder.canonicalize(), path.file_name()) {
        (Ok(folder), Some(name)) => folder.join(name),
        _ => path.to_path_buf(),
    }
}

/// A number of seconds above zero.
fn seconds(text: &str) -> Result<Duration, String> {
    match seconds_or_zero(text)? {
        duration if duration.is_zero() => Err("must be more than 0 seconds".to_owned()),
        duration => Ok(duration),
    }
}

/// A number of seconds, zero included.
fn seconds_or_zero(text: &str) -> Result<Duration, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds (such as 30 or 2.5)"))
}

/// `auto` or a whole number of partitions, as in the job file.
fn parallelism(text: &str) -> Result<Parallelism, String> {
    let value = match text.trim().parse::<u64>() {
        Ok(number) => serde_json::Value::from(number),
        Err(_) => serde_json::Value::from(text.trim()),
    };
    serde_json::from_value(value).map_err(|e| e.to_string())
}
