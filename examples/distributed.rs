//! One table read by separate worker processes: a job's first read planned once, each partition
//! read by a process of its own, then one step that finishes the read.
//!
//! ```sh
//! cargo run --example distributed
//! ```
//!
//! The parent starts the stand-in instance with 20,000 accounts, plans the read of an
//! Account-to-Company job in 4 partitions, stores the plan in `target/distributed/plan.json`,
//! and runs this program again once per partition (`worker <index>`), as a Kubernetes indexed
//! Job or a queue consumer would. Each worker writes its partition to its own JSON Lines file.
//! The parent then finishes the read (the change-tracking delta link) and checks that the
//! workers wrote every account exactly once. Exit code 0 when they did.

use d365_connector::testkit::{AccountShape, StandIn, client_at};
use d365_connector::{
    ClientOptions, DataverseClient, JsonLinesSink, ReadPlan, RunOptions, SyncJob, SyncStatus,
};
use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const JOB: &str = r#"{
  "name": "Accounts to Company",
  "source": { "entity": "account", "incremental": "change_tracking" },
  "target": { "object": "Company",
              "fields": { "DynamicsId": "id", "Name": "string", "Revenue": "number" },
              "required": ["DynamicsId"] },
  "mode": "upsert",
  "identifiers": ["DynamicsId"],
  "mappings": [
    { "source": "accountid", "target": "DynamicsId" },
    { "source": "name", "target": "Name" },
    { "source": "revenue", "target": "Revenue" }
  ]
}"#;

const PARTITIONS: usize = 4;
const ACCOUNTS: usize = 20_000;

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<ExitCode, Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [worker, index] if worker == "worker" => run_worker(index.parse()?).await,
        _ => run_parent().await,
    }
}

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/distributed")
}

/// A client of the stand-in at `url`, started by the parent process.
fn client(url: &str) -> Result<DataverseClient, Failure> {
    Ok(client_at(url, ClientOptions::default())?)
}

async fn run_parent() -> Result<ExitCode, Failure> {
    let crm = StandIn::start().await;
    crm.add_accounts(ACCOUNTS, AccountShape::default());
    let client = client(&crm.url())?;
    let job = SyncJob::from_json(JOB)?;
    let dir = folder();
    fs::create_dir_all(&dir)?;

    let plan = job.plan_read(&client, PARTITIONS, None).await?;
    fs::write(dir.join("plan.json"), serde_json::to_string_pretty(&plan)?)?;
    println!(
        "Planned {} partitions of `account`:",
        plan.partitions().len()
    );
    for (index, partition) in plan.partitions().iter().enumerate() {
        println!(
            "  {index}: after {} up to {}",
            partition.after().unwrap_or("the first id"),
            partition.upto().unwrap_or("the last id")
        );
    }

    let workers: Vec<_> = (0..plan.partitions().len())
        .map(|index| {
            Command::new(std::env::current_exe()?)
                .args(["worker", &index.to_string()])
                .env("D365_STAND_IN_URL", crm.url())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut worker in workers {
        if !worker.wait()?.success() {
            println!("a worker failed; run it again to resume its partition");
            return Ok(ExitCode::FAILURE);
        }
    }

    let finished = job
        .run(
            &client,
            &JsonLinesSink::new(std::io::sink()),
            RunOptions {
                checkpoint: Some(plan.finishing()),
                ..RunOptions::default()
            },
        )
        .await?;
    let delta = finished
        .checkpoint
        .as_ref()
        .and_then(|c| c.delta_link().map(str::len));
    println!(
        "Finished the read: {:?}, next run follows a delta link ({} characters)",
        finished.status,
        delta.unwrap_or(0)
    );

    let written = written_ids(&dir, plan.partitions().len())?;
    let distinct: HashSet<&String> = written.iter().collect();
    println!(
        "Workers wrote {} records, {} distinct, of {ACCOUNTS} accounts",
        written.len(),
        distinct.len()
    );
    let exact = written.len() == ACCOUNTS && distinct.len() == ACCOUNTS;
    Ok(if exact && finished.status == SyncStatus::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Worker `index`: reads its partition of the stored plan into its own file.
async fn run_worker(index: usize) -> Result<ExitCode, Failure> {
    let url = std::env::var("D365_STAND_IN_URL")?;
    let dir = folder();
    let plan: ReadPlan = serde_json::from_str(&fs::read_to_string(dir.join("plan.json"))?)?;
    let job = SyncJob::from_json(JOB)?;
    let out = BufWriter::new(fs::File::create(part_file(&dir, index))?);
    let sink = JsonLinesSink::new(out);
    let report = job
        .run(
            &client(&url)?,
            &sink,
            RunOptions {
                checkpoint: Some(plan.worker(index)?),
                ..RunOptions::default()
            },
        )
        .await?;
    println!(
        "  worker {index} (pid {}): {:?}, {} records",
        std::process::id(),
        report.status,
        report.counts.upserted
    );
    Ok(if report.status == SyncStatus::Success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn part_file(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("part-{index}.jsonl"))
}

/// The `DynamicsId` of every line the workers wrote.
fn written_ids(dir: &Path, parts: usize) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    for index in 0..parts {
        for line in BufReader::new(fs::File::open(part_file(dir, index))?).lines() {
            let line: serde_json::Value = serde_json::from_str(&line?)?;
            ids.push(
                line["key"]["DynamicsId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
    }
    Ok(ids)
}
