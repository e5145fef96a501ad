//! Runs one sync job against any Dynamics 365 instance.
//!
//! ```sh
//! D365_URL=https://contoso.crm4.dynamics.com D365_TENANT_ID=<tenant> \
//! D365_CLIENT_ID=<app id> D365_CLIENT_SECRET=<secret> \
//! cargo run --release --example sync -- --job JOB.json [--state STATE.json] [--out OUT.jsonl] [--errors ERRORS.jsonl]
//! cargo run --release --example sync -- --job JOB.json --db sqlite://PATH [--errors ERRORS.jsonl]
//! cargo run --release --example sync -- --help
//! ```
//!
//! The connection signs in as an application user (client credentials) with
//! `D365_CLIENT_SECRET`, or with `D365_CLIENT_CERTIFICATE` (the path of a PEM file holding the
//! app's private key and certificate) in its place. With neither, on Kubernetes, workload
//! identity is used when `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE`
//! are set (in place of `D365_TENANT_ID` and `D365_CLIENT_ID` too). `D365_AUTHORITY` optionally
//! names the authority base URL (a loopback `http://127.0.0.1:PORT` is accepted; with workload
//! identity, `AZURE_AUTHORITY_HOST` is the default).
//!
//! Every path is checked before anything is read. The job resumes from `--state` and saves the
//! checkpoint there after every batch written (atomically), after appending that batch's failed
//! records to `--errors`. Operations are appended to `--out` as JSON Lines (stdout when absent);
//! a torn last line left by a crash is cut off first. A lock file beside `--state` (or `--out`)
//! keeps a second run off the same files. The report is printed as one JSON line last on stdout
//! (on stderr when records go to stdout). SIGINT and SIGTERM stop the run after the current
//! batch, with its checkpoint saved; a second signal exits at once. `--help` lists the flags and
//! the exit codes.
//!
//! With `--db`, records go to the job's target table in that database (created when missing),
//! and the checkpoint lives there too, committed with each batch: `--state` and `--out` are not
//! used.

mod args;
mod files;
mod progress;

pub use args::Args;
pub use files::Failure;

use d365_connector::{
    CancelToken, Checkpoint, CheckpointStore, ClientCertificate, ClientCredentialsAuthorizer,
    ClientSecret, Connection, DataverseClient, EntraApp, ErrorKind, FileCheckpointStore,
    JsonLinesSink, MappingErrors, RecordFailure, RecordSink, RunOptions, SqlSink, SyncJob,
    SyncProgress, SyncReport, SyncStatus, WorkloadIdentity,
};
use files::{LineFile, RunLock};
use progress::Progress;
use std::fs;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Exit code for a bad job file, bad environment, bad paths or mapping violations.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for a failed run.
pub const EXIT_FAILED: i32 = 1;
/// Exit code of a run cancelled by SIGINT (Ctrl-C).
pub const EXIT_SIGINT: i32 = 130;
/// Exit code of a run cancelled by SIGTERM.
pub const EXIT_SIGTERM: i32 = 143;
/// How many records `--dry-run` prints at most.
const PREVIEW_RECORDS: usize = 10;

/// Where the command writes, and what its standard error is.
pub struct Console<'a> {
    /// Records (without `--out`) and the report.
    pub stdout: &'a mut (dyn Write + Send),
    /// Messages, progress lines, and the report when records go to `stdout`.
    pub stderr: &'a mut (dyn Write + Send),
    /// Whether standard error is a terminal with nothing else on it (a progress bar is drawn).
    pub terminal: bool,
}

/// A request to stop the run: the first one cancels after the current batch and sets the exit
/// code (130 for SIGINT, 143 for SIGTERM). Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    cancel: CancelToken,
    code: Arc<AtomicI32>,
}

impl Interrupt {
    /// Asks the run to stop, to exit with `code`; `false` when it was already asked.
    pub fn stop(&self, code: i32) -> bool {
        let first = self
            .code
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        self.cancel.cancel();
        first
    }

    /// The exit code of the signal that stopped the run, if one did.
    fn exit_code(&self) -> Option<i32> {
        Some(self.code.load(Ordering::SeqCst)).filter(|&code| code != 0)
    }
}

/// Runs the command with `args`, reading the environment through `env`; returns the exit code.
/// Standard error counts as no terminal, and nothing interrupts the run.
pub async fn run(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> i32 {
    let console = Console {
        stdout,
        stderr,
        terminal: false,
    };
    run_with(args, env, console, &Interrupt::default()).await
}

/// Runs the command on `console`, stopped by `interrupt`; returns the exit code.
pub async fn run_with(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    console: Console<'_>,
    interrupt: &Interrupt,
) -> i32 {
    let Console {
        stdout,
        stderr,
        terminal,
    } = console;
    let args = match Args::parse(args) {
        Ok(args) => args,
        Err((0, text)) => {
            let _ = write!(stdout, "{text}");
            return 0;
        }
        Err((code, text)) => {
            let _ = writeln!(stderr, "{}", text.trim_end());
            return code;
        }
    };
    let mut command = Command {
        args,
        stdout,
        stderr,
        terminal,
        interrupt,
    };
    match command.run(&env).await {
        Ok(code) => code,
        Err((code, message)) => {
            let _ = writeln!(command.stderr, "{message}");
            code
        }
    }
}

/// One run of the command.
struct Command<'a, 'i> {
    args: Args,
    stdout: &'a mut (dyn Write + Send),
    stderr: &'a mut (dyn Write + Send),
    terminal: bool,
    interrupt: &'i Interrupt,
}

/// The files of a run that writes JSON Lines, opened and locked.
struct Files {
    /// Held for the whole run.
    _lock: Option<RunLock>,
    out: Option<LineFile>,
    errors: Option<LineFile>,
    state: Option<FileCheckpointStore>,
}

impl Command<'_, '_> {
    /// Checks everything, then runs the job (or previews it); the exit code.
    async fn run(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<i32, Failure> {
        let bad = |message: String| (EXIT_BAD_INPUT, message);
        let path = &self.args.job;
        let text = fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read the job file {}: {e}", path.display())))?;
        let mut job =
            SyncJob::from_json(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if let Some(parallelism) = self.args.parallelism {
            job.source.parallelism = parallelism;
        }
        let (app, authority) = sign_in_from_env(env)?;
        if self.args.dry_run {
            return self.dry_run(&job, env, app, authority).await;
        }
        let mut warnings = Vec::new();
        let files = self.open_files(&mut warnings)?;
        let checkpoint = match &files.state {
            Some(state) => self.checkpoint(&job, state)?,
            None => None,
        };
        self.warn(&warnings);
        let client = connect(env, app, authority, &self.args).await?;
        let report = match self.args.db.clone() {
            Some(url) => self.sync_into_database(&job, &client, &url, files).await?,
            None => {
                self.sync_into_lines(&job, &client, checkpoint, files)
                    .await?
            }
        };
        self.finish(&job, report)
    }

    /// Prints `warnings` on standard error.
    fn warn(&mut self, warnings: &[String]) {
        for warning in warnings {
            let _ = writeln!(self.stderr, "warning: {warning}");
        }
    }

    /// Checks and opens `--out` and `--errors`, checks `--state`, and takes the lock beside
    /// `--state` (or a regular `--out`).
    fn open_files(&self, warnings: &mut Vec<String>) -> Result<Files, Failure> {
        let args = &self.args;
        let lock = match (&args.state, &args.out) {
            (Some(state), _) => {
                files::check_writable("--state", state)?;
                Some(RunLock::take("--state", state, warnings)?)
            }
            (None, Some(out)) if !out.exists() || out.is_file() => {
                Some(RunLock::take("--out", out, warnings)?)
            }
            _ => None,
        };
        let open = |flag: &str, path: &Option<std::path::PathBuf>, warnings: &mut Vec<String>| {
            path.as_deref()
                .map(|path| LineFile::append(flag, path, warnings))
                .transpose()
        };
        Ok(Files {
            _lock: lock,
            out: open("--out", &args.out, warnings)?,
            errors: open("--errors", &args.errors, warnings)?,
            state: args.state.as_ref().map(FileCheckpointStore::new),
        })
    }

    /// The job's checkpoint in `state`, unless `--force-resync`; a state made for another
    /// table, or holding only other jobs' checkpoints, is refused (exit 2).
    fn checkpoint(
        &self,
        job: &SyncJob,
        state: &FileCheckpointStore,
    ) -> Result<Option<Checkpoint>, Failure> {
        let bad = |message: String| (EXIT_BAD_INPUT, message);
        let path = state.path().display();
        let names = state
            .job_names()
            .map_err(|e| bad(format!("--state: {e}")))?;
        let saved = futures::executor::block_on(state.load(&job.name))
            .map_err(|e| bad(format!("--state: {e}")))?;
        let table = &job.source.entity;
        let refusal = match &saved {
            _ if self.args.force_resync => return Ok(None),
            Some(checkpoint) if checkpoint.entity() != table => format!(
                "--state {path} holds the checkpoint of job `{}` for the table `{}`, but this job reads `{table}`: it was made for another job",
                job.name,
                checkpoint.entity()
            ),
            None if !names.is_empty() => format!(
                "--state {path} holds the checkpoints of {} but none of job `{}`: it was made for another job",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                job.name
            ),
            _ => return Ok(saved),
        };
        Err(bad(format!(
            "{refusal}; give this job its own --state file, or pass --force-resync to read `{table}` from the beginning and save its checkpoint there"
        )))
    }

    /// Runs the job into JSON Lines (`--out`, or stdout), saving the checkpoint and failures
    /// after every batch.
    async fn sync_into_lines(
        &mut self,
        job: &SyncJob,
        client: &DataverseClient,
        checkpoint: Option<Checkpoint>,
        mut files: Files,
    ) -> Result<SyncReport, Failure> {
        let (writer, destination): (Box<dyn Write + Send + '_>, String) =
            match (files.out.take(), &self.args.out) {
                (Some(out), Some(path)) => (Box::new(out), path.display().to_string()),
                _ => (Box::new(&mut *self.stdout), "standard output".to_owned()),
            };
        // The job flushes the sink after every batch (to disk, for a file) before the
        // progress callback saves the checkpoint, which so never runs ahead of the records.
        let sink = JsonLinesSink::new(writer).with_destination(destination);
        let keeper = Keeper {
            errors: Mutex::new(files.errors.take()),
            state: files.state.take(),
            job: job.name.clone(),
            problem: Mutex::new(None),
        };
        let watch = Watch {
            args: &self.args,
            terminal: self.terminal,
            stderr: &mut *self.stderr,
            interrupt: self.interrupt,
        };
        watch.run(job, client, &sink, checkpoint, keeper).await
    }

    /// Runs the job into the database at `url`, resuming from the checkpoint kept there;
    /// failures are appended to `--errors` after every batch.
    async fn sync_into_database(
        &mut self,
        job: &SyncJob,
        client: &DataverseClient,
        url: &str,
        mut files: Files,
    ) -> Result<SyncReport, Failure> {
        let database = |e: d365_connector::Error| (exit_code(&e), format!("--db: {e}"));
        let sink = SqlSink::connect(url).await.map_err(database)?;
        let checkpoint = sink.load(&job.name).await.map_err(database)?;
        let keeper = Keeper {
            errors: Mutex::new(files.errors.take()),
            state: None,
            job: job.name.clone(),
            problem: Mutex::new(None),
        };
        let watch = Watch {
            args: &self.args,
            terminal: self.terminal,
            stderr: &mut *self.stderr,
            interrupt: self.interrupt,
        };
        watch.run(job, client, &sink, checkpoint, keeper).await
    }

    /// Prints the report (stdout, or stderr when records went to stdout); the exit code of its
    /// status.
    fn finish(&mut self, job: &SyncJob, report: SyncReport) -> Result<i32, Failure> {
        let line = serde_json::to_string(&report).map_err(|e| (EXIT_FAILED, e.to_string()))?;
        let records_to_stdout = self.args.out.is_none() && self.args.db.is_none();
        let stream: &mut (dyn Write + Send) = if records_to_stdout {
            &mut *self.stderr
        } else {
            &mut *self.stdout
        };
        let _ = writeln!(stream, "{line}");
        Ok(match report.status {
            SyncStatus::Success | SyncStatus::PartialSuccess => 0,
            SyncStatus::Failed => EXIT_FAILED,
            SyncStatus::Cancelled => {
                let _ = writeln!(
                    self.stderr,
                    "the job `{}` was cancelled; the next run resumes after the last batch written",
                    job.name
                );
                self.interrupt.exit_code().unwrap_or(EXIT_FAILED)
            }
        })
    }

    /// Checks the paths (changing nothing), validates the job, reads its first page and prints
    /// the first records it would write; writes nothing. `--db` is not opened (the preview
    /// starts from `--state`'s checkpoint, or from the beginning).
    async fn dry_run(
        &mut self,
        job: &SyncJob,
        env: &impl Fn(&str) -> Option<String>,
        app: EntraApp,
        authority: Option<String>,
    ) -> Result<i32, Failure> {
        let args = &self.args;
        for (flag, path) in [
            ("--state", &args.state),
            ("--out", &args.out),
            ("--errors", &args.errors),
        ] {
            if let Some(path) = path {
                files::check_writable(flag, path)?;
            }
        }
        let checkpoint = match &args.state {
            Some(path) if path.exists() => self.checkpoint(job, &FileCheckpointStore::new(path))?,
            _ => None,
        };
        let client = connect(env, app, authority, args).await?;
        let sink = JsonLinesSink::new(Vec::new()).with_destination("the preview");
        let first_page = CancelToken::new();
        let stop = first_page.clone();
        let options = RunOptions {
            checkpoint,
            progress: Some(Arc::new(move |_: &SyncProgress| stop.cancel())),
            cancel: Some(first_page.clone()),
            ..RunOptions::default()
        };
        let report = job
            .run(&client, &sink, options)
            .await
            .map_err(|e| refused(job, &e))?;
        let preview = sink.into_inner();
        let preview = String::from_utf8_lossy(&preview);
        for line in preview.lines().take(PREVIEW_RECORDS) {
            let _ = writeln!(self.stdout, "{line}");
        }
        self.preview_summary(job, &report)
    }

    /// The dry run's closing lines on stderr; the exit code.
    fn preview_summary(&mut self, job: &SyncJob, report: &SyncReport) -> Result<i32, Failure> {
        if report.status == SyncStatus::Failed && report.counts.read == 0 {
            let error = report.error.as_ref().map(ToString::to_string);
            let error = error.unwrap_or_default();
            return Err((
                EXIT_FAILED,
                format!("the dry run of `{}` failed: {error}", job.name),
            ));
        }
        let c = &report.counts;
        let _ = writeln!(
            self.stderr,
            "dry run of `{}`: the job is valid; the first page held {} records: {} would be written (the first {} shown above), {} would fail; nothing was written",
            job.name,
            c.read,
            c.written(),
            PREVIEW_RECORDS.min(c.written() as usize),
            c.failed
        );
        for failure in report.failures.iter().take(PREVIEW_RECORDS) {
            let _ = writeln!(
                self.stderr,
                "  would fail: {} {}: {}",
                failure.record_id, failure.field, failure.reason
            );
        }
        Ok(0)
    }
}

/// Keeps what a run must not lose after every batch the sink accepted: the batch's failed
/// records (appended to `--errors` first, since the checkpoint then moves past them) and the
/// checkpoint (`--state`). The first problem stops the run.
struct Keeper {
    errors: Mutex<Option<LineFile>>,
    state: Option<FileCheckpointStore>,
    job: String,
    problem: Mutex<Option<String>>,
}

impl Keeper {
    /// Stores `progress`; `Err` says what could not be stored.
    fn keep(&self, progress: &SyncProgress) -> Result<(), String> {
        self.append_failures(&progress.failures)?;
        self.save(progress.checkpoint.as_ref())
    }

    /// Appends `failures` to `--errors` and syncs them.
    fn append_failures(&self, failures: &[RecordFailure]) -> Result<(), String> {
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        let (Some(errors), false) = (errors.as_mut(), failures.is_empty()) else {
            return Ok(());
        };
        let mut lines = Vec::new();
        for failure in failures {
            serde_json::to_writer(&mut lines, failure).map_err(|e| e.to_string())?;
            lines.push(b'\n');
        }
        errors
            .write_all(&lines)
            .and_then(|()| errors.flush())
            .map_err(|e| format!("--errors could not be written ({e})"))
    }

    /// Saves `checkpoint` to `--state` (atomically).
    fn save(&self, checkpoint: Option<&Checkpoint>) -> Result<(), String> {
        let (Some(state), Some(checkpoint)) = (&self.state, checkpoint) else {
            return Ok(());
        };
        // FileCheckpointStore does its work synchronously: the future is ready at once.
        futures::executor::block_on(state.save(&self.job, checkpoint)).map_err(|e| e.to_string())
    }

    /// Records the first problem, to stop the run.
    fn record(&self, problem: String) {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(problem);
    }

    /// The report, once its final checkpoint is saved; a problem met during the run fails it.
    fn settle(&self, report: SyncReport) -> Result<SyncReport, Failure> {
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let problem = problem.or_else(|| {
            let state = self.state.as_ref()?;
            let checkpoint = report.checkpoint.as_ref()?;
            futures::executor::block_on(state.save(&self.job, checkpoint))
                .err()
                .map(|e| e.to_string())
        });
        match problem {
            Some(problem) => Err((
                EXIT_FAILED,
                format!("the run of `{}` stopped: {problem}", self.job),
            )),
            None => Ok(report),
        }
    }
}

/// What a run reports to: progress on `stderr` as `args` ask, and `interrupt` to stop it.
struct Watch<'a> {
    args: &'a Args,
    terminal: bool,
    stderr: &'a mut (dyn Write + Send),
    interrupt: &'a Interrupt,
}

impl Watch<'_> {
    /// Runs `job` into `sink` from `checkpoint`, keeping every batch through `keeper`, showing
    /// progress, and stopping on the interrupt or on the first problem keeping a batch.
    async fn run(
        self,
        job: &SyncJob,
        client: &DataverseClient,
        sink: &dyn RecordSink,
        checkpoint: Option<Checkpoint>,
        keeper: Keeper,
    ) -> Result<SyncReport, Failure> {
        let keeper = Arc::new(keeper);
        let (updates, mut received) = tokio::sync::mpsc::unbounded_channel::<SyncProgress>();
        let (kept, cancel) = (Arc::clone(&keeper), self.interrupt.cancel.clone());
        // The batch is kept before the run goes on; showing it can wait.
        let after_batch = move |batch: &SyncProgress| {
            if let Err(problem) = kept.keep(batch) {
                kept.record(problem);
                cancel.cancel();
            }
            let _ = updates.send(batch.clone());
        };
        let options = RunOptions {
            checkpoint,
            progress: Some(Arc::new(after_batch)),
            cancel: Some(self.interrupt.cancel.clone()),
            ..RunOptions::default()
        };
        let progress = Progress::new(self.args.quiet, self.terminal, self.args.progress_every);
        let stderr = self.stderr;
        let show = async {
            while let Some(batch) = received.recv().await {
                progress.update(&batch, stderr);
            }
        };
        // The run's options (and so the sender) are dropped when it ends, which ends `show`.
        let (report, ()) = futures::join!(job.run(client, sink, options), show);
        progress.finish();
        keeper.settle(report.map_err(|e| refused(job, &e))?)
    }
}

/// The exit code and message of a job that refused to start.
fn refused(job: &SyncJob, error: &d365_connector::Error) -> Failure {
    if let Some(violations) = MappingErrors::from_error(error) {
        let mut message = format!("the job `{}` has mapping violations:", job.name);
        for violation in violations.violations() {
            message.push_str(&format!("\n  - {}", violation.message));
        }
        return (EXIT_BAD_INPUT, message);
    }
    (
        exit_code(error),
        format!("the job `{}` could not start: {error}", job.name),
    )
}

/// Exit 2 for what the user must fix in the input (`Config`), 1 for anything else.
fn exit_code(error: &d365_connector::Error) -> i32 {
    if error.kind() == ErrorKind::Config {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILED
    }
}

/// Builds and authorizes the connection for `app`, with the request settings of `args`.
async fn connect(
    env: &impl Fn(&str) -> Option<String>,
    app: EntraApp,
    authority: Option<String>,
    args: &Args,
) -> Result<DataverseClient, Failure> {
    let bad = |e: d365_connector::Error| (EXIT_BAD_INPUT, e.to_string());
    let mut builder = Connection::builder("sync", env("D365_URL").unwrap_or_default());
    if let Some(authority) = authority {
        builder = builder.with_authority(authority);
    }
    let connection = builder.build().map_err(bad)?;
    let options = args.client_options();
    let authorizer = ClientCredentialsAuthorizer::builder(&connection, app)
        .with_client_options(options.clone())
        .build()
        .map_err(bad)?;
    DataverseClient::with_options(connection, Arc::new(authorizer), options).map_err(bad)
}
/// The app the connection signs in as, and the authority to use: `D365_CLIENT_SECRET`, or
/// `D365_CLIENT_CERTIFICATE` (a PEM file with the private key and the certificate), with
/// `D365_TENANT_ID` and `D365_CLIENT_ID`; with neither, Kubernetes workload identity when its
/// `AZURE_*` variables are set. The authority is `D365_AUTHORITY`, else workload identity's
/// `AZURE_AUTHORITY_HOST`.
pub fn sign_in_from_env(
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(EntraApp, Option<String>), Failure> {
    let value = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let bad = |e: d365_connector::Error| (EXIT_BAD_INPUT, e.to_string());
    let secret = value("D365_CLIENT_SECRET");
    let certificate = value("D365_CLIENT_CERTIFICATE");
    let workload = match (&secret, &certificate) {
        (None, None) => WorkloadIdentity::from_lookup(env).map_err(bad)?,
        _ => None,
    };
    let mut missing: Vec<&str> = vec!["D365_URL"];
    if workload.is_none() {
        missing.extend(["D365_TENANT_ID", "D365_CLIENT_ID"]);
    }
    missing.retain(|name| value(name).is_none());
    if secret.is_none() && certificate.is_none() && workload.is_none() {
        missing.push("D365_CLIENT_SECRET");
    }
    if !missing.is_empty() {
        return Err((EXIT_BAD_INPUT, missing_variables(&missing)));
    }
    let authority = value("D365_AUTHORITY");
    if let Some(workload) = workload {
        let authority = authority.or_else(|| workload.authority_host().map(str::to_owned));
        return Ok((workload.app().map_err(bad)?, authority));
    }
    let app = EntraApp::builder(
        value("D365_TENANT_ID").unwrap_or_default(),
        value("D365_CLIENT_ID").unwrap_or_default(),
    );
    let app = match (secret, certificate) {
        (Some(_), Some(_)) => {
            return Err((
                EXIT_BAD_INPUT,
                "set D365_CLIENT_SECRET or D365_CLIENT_CERTIFICATE, not both".to_owned(),
            ));
        }
        (Some(secret), None) => app.with_client_secret(ClientSecret::new(secret)),
        (None, Some(path)) => app.with_client_certificate(
            ClientCertificate::from_pem_file(path.trim())
                .map_err(|e| (EXIT_BAD_INPUT, format!("D365_CLIENT_CERTIFICATE: {e}")))?,
        ),
        // Not reached (a credential or workload identity was checked above); the authorizer's
        // builder would refuse an app without a credential.
        (None, None) => app,
    };
    Ok((app.build().map_err(bad)?, authority))
}

/// The message for missing variables; a missing credential lists the three ways to give one.
fn missing_variables(missing: &[&str]) -> String {
    let mut message = format!("set the environment variables {}", missing.join(", "));
    if missing.contains(&"D365_CLIENT_SECRET") {
        message.push_str(
            " (or D365_CLIENT_CERTIFICATE, a PEM file with the app's private key and certificate, in place of D365_CLIENT_SECRET; or, on Kubernetes, workload identity's AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE in place of D365_TENANT_ID, D365_CLIENT_ID and a credential)",
        );
    }
    message.push_str(" (optional: D365_AUTHORITY)");
    message
}

/// The command as a process runs it: real standard streams (a progress bar when standard error
/// is a terminal and `RUST_LOG` is not set), SIGINT and SIGTERM stopping the run after the
/// current batch, a second signal exiting at once.
pub async fn command_line(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> i32 {
    let interrupt = Interrupt::default();
    let listener = tokio::spawn(listen(interrupt.clone()));
    let (mut stdout, mut stderr) = (io::stdout(), io::stderr());
    let console = Console {
        terminal: stderr.is_terminal() && env("RUST_LOG").is_none(),
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let code = run_with(args, env, console, &interrupt).await;
    listener.abort();
    code
}

/// Stops `interrupt` on the first SIGINT or SIGTERM, and exits at once on the next.
async fn listen(interrupt: Interrupt) {
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("warning: signals cannot be handled ({e}); Ctrl-C stops the run at once");
            return;
        }
    };
    loop {
        let code = signals.next().await;
        if !interrupt.stop(code) {
            std::process::exit(code);
        }
        eprintln!(
            "stopping after the current batch (the checkpoint is saved); signal again to exit at once"
        );
    }
}

/// SIGINT and SIGTERM (Ctrl-C alone where there is no SIGTERM).
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Starts listening.
    fn new() -> io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// The exit code of the next signal: 130 for SIGINT, 143 for SIGTERM.
    async fn next(&mut self) -> i32 {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => EXIT_SIGINT,
                _ = self.terminate.recv() => EXIT_SIGTERM,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            EXIT_SIGINT
        }
    }
}

#[allow(dead_code)] // `main` is unused where tests include this file as a module.
#[tokio::main]
async fn main() {
    // Logs only when asked for: RUST_LOG=d365_connector=debug, say.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .init();
    }
    let code = command_line(std::env::args().skip(1), |name| std::env::var(name).ok()).await;
    std::process::exit(code);
}
