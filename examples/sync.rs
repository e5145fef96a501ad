//! Runs one sync job against any Dynamics 365 instance.
//!
//! ```sh
//! D365_URL=https://contoso.crm4.dynamics.com D365_TENANT_ID=<tenant> \
//! D365_CLIENT_ID=<app id> D365_CLIENT_SECRET=<secret> \
//! cargo run --release --example sync -- --job JOB.json [--state STATE.json] [--out OUT.jsonl] [--errors ERRORS.jsonl]
//! cargo run --release --example sync -- --job JOB.json --db sqlite://PATH [--errors ERRORS.jsonl]
//! cargo run --release --example sync -- --job JOB.json --db postgres://USER@HOST:PORT/DB [--errors ERRORS.jsonl]
//! ```
//!
//! The connection signs in as an application user (client credentials) with
//! `D365_CLIENT_SECRET`, or with `D365_CLIENT_CERTIFICATE` (the path of a PEM file holding the
//! app's private key and certificate) in its place. With neither, on Kubernetes, workload
//! identity is used when `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE`
//! are set (in place of `D365_TENANT_ID` and `D365_CLIENT_ID` too). `D365_AUTHORITY` optionally
//! names the authority base URL (a loopback `http://127.0.0.1:PORT` is accepted; with workload
//! identity, `AZURE_AUTHORITY_HOST` is the default).
//! The job resumes from `--state` when that file exists and saves the new checkpoint there
//! (atomically, after the sink has flushed). Operations are appended to `--out` as JSON Lines
//! (stdout when absent); failed records go to `--errors`; the report is printed as one JSON line
//! last on stdout (on stderr when records go to stdout).
//!
//! With `--db`, records go to the job's target table in that database (created when missing),
//! and the checkpoint lives there too, committed with each batch: `--state` and `--out` are not
//! used.
//!
//! Exit codes: 0 Success or PartialSuccess, 1 Failed (or cancelled), 2 a bad job file, bad
//! environment or mapping violations (each printed).

use d365_connector::{
    CheckpointStore, ClientCertificate, ClientCredentialsAuthorizer, ClientSecret, Connection,
    DataverseClient, EntraApp, ErrorKind, FileCheckpointStore, JsonLinesSink, MappingErrors,
    RunOptions, SqlSink, SyncJob, SyncReport, SyncStatus, WorkloadIdentity,
};
use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The command line, parsed.
#[derive(Debug, Default)]
pub struct Args {
    job: PathBuf,
    state: Option<PathBuf>,
    out: Option<PathBuf>,
    errors: Option<PathBuf>,
    db: Option<String>,
}

const USAGE: &str =
    "usage: sync --job JOB.json [--state STATE.json] [--out OUT.jsonl] [--errors ERRORS.jsonl]
       sync --job JOB.json --db sqlite://PATH|postgres://USER@HOST:PORT/DB [--errors ERRORS.jsonl]";

/// Exit code for a bad job file, bad environment or mapping violations.
const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for a failed run.
const EXIT_FAILED: i32 = 1;

/// Parses `--job`, `--state`, `--out`, `--errors` and `--db`.
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut job = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let slot = match flag.as_str() {
            "--job" => &mut job,
            "--state" => &mut parsed.state,
            "--out" => &mut parsed.out,
            "--errors" => &mut parsed.errors,
            "--db" => {
                parsed.db = Some(value);
                continue;
            }
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        };
        *slot = Some(PathBuf::from(value));
    }
    parsed.job = job.ok_or_else(|| format!("--job is required\n{USAGE}"))?;
    if parsed.db.is_some() && (parsed.state.is_some() || parsed.out.is_some()) {
        return Err(format!(
            "--db keeps the records and the checkpoint in the database; leave out --state and --out\n{USAGE}"
        ));
    }
    Ok(parsed)
}

/// Runs the command with `args`, reading the environment through `env`; returns the exit code.
pub async fn run(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> i32 {
    match try_run(args, env, stdout, stderr).await {
        Ok(code) => code,
        Err((code, message)) => {
            let _ = writeln!(stderr, "{message}");
            code
        }
    }
}

type Failure = (i32, String);

async fn try_run(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> Result<i32, Failure> {
    let bad = |message: String| (EXIT_BAD_INPUT, message);
    let args = parse_args(args).map_err(bad)?;
    let job_text = fs::read_to_string(&args.job).map_err(|e| {
        bad(format!(
            "cannot read the job file {}: {e}",
            args.job.display()
        ))
    })?;
    let job =
        SyncJob::from_json(&job_text).map_err(|e| bad(format!("{}: {e}", args.job.display())))?;
    let client = connect(&env).await?;
    let state = args.state.as_ref().map(FileCheckpointStore::new);
    let records_to_stdout = args.out.is_none() && args.db.is_none();
    let report = match &args.db {
        Some(url) => run_into_database(&job, &client, url).await?,
        None => run_into_lines(&job, &client, &args, state.as_ref(), stdout).await?,
    };
    let report = report.map_err(|error| refused(&job, &error))?;

    // The failed records first: once the state moves on, they are not read again.
    if let Some(path) = &args.errors {
        let file = fs::File::create(path)
            .map_err(|e| (EXIT_FAILED, format!("cannot write {}: {e}", path.display())))?;
        report
            .write_failures_jsonl(BufWriter::new(file))
            .map_err(|e| (EXIT_FAILED, e.to_string()))?;
    }
    if let (Some(state), Some(checkpoint)) = (&state, &report.checkpoint) {
        state
            .save(&job.name, checkpoint)
            .await
            .map_err(|e| (EXIT_FAILED, e.to_string()))?;
    }
    let line = serde_json::to_string(&report).map_err(|e| (EXIT_FAILED, e.to_string()))?;
    let report_stream: &mut (dyn Write + Send) = if records_to_stdout { stderr } else { stdout };
    let _ = writeln!(report_stream, "{line}");
    Ok(match report.status {
        SyncStatus::Success | SyncStatus::PartialSuccess => 0,
        SyncStatus::Failed | SyncStatus::Cancelled => EXIT_FAILED,
    })
}

/// The run's outcome: `Err` when the job refused to start.
type Outcome = d365_connector::Result<SyncReport>;

/// Runs the job into the database at `url`, resuming from the checkpoint kept there.
async fn run_into_database(
    job: &SyncJob,
    client: &DataverseClient,
    url: &str,
) -> Result<Outcome, Failure> {
    let database = |e: d365_connector::Error| (exit_code(&e), format!("--db: {e}"));
    let sink = SqlSink::connect(url).await.map_err(database)?;
    let checkpoint = sink.load(&job.name).await.map_err(database)?;
    let options = RunOptions {
        checkpoint,
        ..RunOptions::default()
    };
    Ok(job.run(client, &sink, options).await)
}

/// Runs the job into JSON Lines (`--out`, or stdout), resuming from `state`.
async fn run_into_lines(
    job: &SyncJob,
    client: &DataverseClient,
    args: &Args,
    state: Option<&FileCheckpointStore>,
    stdout: &mut (dyn Write + Send),
) -> Result<Outcome, Failure> {
    let bad = |message: String| (EXIT_BAD_INPUT, message);
    let checkpoint = match state {
        Some(state) => state
            .load(&job.name)
            .await
            .map_err(|e| bad(e.to_string()))?,
        None => None,
    };
    let out: Box<dyn Write + Send + '_> = match &args.out {
        Some(path) => Box::new(DurableFile(BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| bad(format!("cannot open {}: {e}", path.display())))?,
        ))),
        None => Box::new(stdout),
    };
    // The job flushes the sink after every batch (to disk, for a file), so the checkpoint
    // saved afterwards never runs ahead of the records written.
    let destination = match &args.out {
        Some(path) => path.display().to_string(),
        None => "standard output".to_owned(),
    };
    let sink = JsonLinesSink::new(out).with_destination(destination);
    let options = RunOptions {
        checkpoint,
        ..RunOptions::default()
    };
    Ok(job.run(client, &sink, options).await)
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

/// An output file whose `flush` also syncs it to disk, so a saved checkpoint never runs ahead
/// of the records on disk.
struct DurableFile(BufWriter<fs::File>);

impl Write for DurableFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

/// Builds and authorizes the connection from the `D365_*` variables.
async fn connect(env: &impl Fn(&str) -> Option<String>) -> Result<DataverseClient, Failure> {
    let (app, authority) = sign_in_from_env(env)?;
    let bad = |e: d365_connector::Error| (EXIT_BAD_INPUT, e.to_string());
    let mut builder = Connection::builder("sync", env("D365_URL").unwrap_or_default());
    if let Some(authority) = authority {
        builder = builder.with_authority(authority);
    }
    let connection = builder.build().map_err(bad)?;
    let authorizer = ClientCredentialsAuthorizer::builder(&connection, app)
        .build()
        .map_err(bad)?;
    DataverseClient::new(connection, Arc::new(authorizer)).map_err(bad)
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

#[allow(dead_code)] // `main` is unused where tests include this file as a module.
#[tokio::main]
async fn main() {
    let code = run(
        std::env::args().skip(1),
        |name| std::env::var(name).ok(),
        &mut io::stdout(),
        &mut io::stderr(),
    )
    .await;
    std::process::exit(code);
}
