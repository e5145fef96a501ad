//! The `sync` example's code path end to end on the stand-in instance, with a job file in the
//! public format.

#[path = "../examples/sync/main.rs"]
mod sync_example;

use d365_connector::testkit::StandIn;
use d365_connector::{CheckpointStore, FileCheckpointStore};
use serde_json::{Value, json};
use std::fs;
use std::path::PathBuf;

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("d365-sync-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn job_file() -> Value {
    json!({
        "name": "Contacts to Person",
        "source": { "entity": "contact", "incremental": "auto", "filter": "statecode eq 0" },
        "target": { "object": "Person",
                    "fields": { "ExternalId": "id", "Email": "string", "CompanyId": "id",
                                "Score": "number", "Since": "date", "Updated": "datetime",
                                "Status": "string" },
                    "required": ["ExternalId"] },
        "mode": "upsert",
        "identifiers": ["ExternalId"],
        "mappings": [
            { "source": "contactid", "target": "ExternalId" },
            { "source": "emailaddress1", "target": "Email" },
            { "source": "parentcustomerid", "target": "CompanyId" },
            { "source": "annualincome", "target": "Score" },
            { "source": "birthdate", "target": "Since" },
            { "source": "modifiedon", "target": "Updated" },
            { "source": "statecode", "target": "Status", "label": true }
        ],
        "deletes": "propagate"
    })
}

fn environment(crm: &StandIn) -> impl Fn(&str) -> Option<String> + use<> {
    let values = [
        ("D365_URL", crm.url()),
        ("D365_TENANT_ID", StandIn::TENANT_ID.to_owned()),
        ("D365_CLIENT_ID", StandIn::CLIENT_ID.to_owned()),
        ("D365_CLIENT_SECRET", StandIn::CLIENT_SECRET.to_owned()),
        ("D365_AUTHORITY", crm.authority()),
    ];
    move |name| {
        values
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    }
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run_sync(args: &[&str], env: impl Fn(&str) -> Option<String>) -> Outcome {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = sync_example::run(
        args.iter().map(|a| a.to_string()),
        env,
        &mut stdout,
        &mut stderr,
    )
    .await;
    Outcome {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn lines(path: &PathBuf) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn a_job_file_runs_resumes_and_appends_only_changes() {
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("resume");
    let (job, state, out, errors) = (
        dir.join("job.json"),
        dir.join("state.json"),
        dir.join("out.jsonl"),
        dir.join("errors.jsonl"),
    );
    fs::write(&job, job_file().to_string()).unwrap();
    let args = [
        "--job",
        job.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--errors",
        errors.to_str().unwrap(),
    ];
    let active: Vec<Value> = crm
        .rows("contact")
        .into_iter()
        .filter(|row| row["statecode"] == 0)
        .collect();

    let first = run_sync(&args, environment(&crm)).await;

    assert_eq!(first.code, 0, "{}", first.stderr);
    let written = lines(&out);
    assert_eq!(written.len(), active.len());
    let one = &written[0];
    assert_eq!(one["op"], "upsert");
    assert_eq!(one["object"], "Person");
    let row = active
        .iter()
        .find(|row| row["contactid"] == one["record"]["ExternalId"])
        .unwrap();
    assert_eq!(one["record"]["CompanyId"], row["_parentcustomerid_value"]);
    assert_eq!(one["record"]["Status"], "Active");
    assert_eq!(one["key"]["ExternalId"], row["contactid"]);
    let report: Value = serde_json::from_str(first.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "Success");
    assert_eq!(report["counts"]["upserted"], active.len());
    let checkpoint = FileCheckpointStore::new(&state)
        .load("Contacts to Person")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.entity(), "contact");
    assert!(fs::read_to_string(&errors).unwrap().is_empty());

    let changed = active[2]["contactid"].as_str().unwrap().to_owned();
    crm.upsert(
        "contact",
        json!({"contactid": changed, "emailaddress1": "new@example.com"}),
    );
    let second = run_sync(&args, environment(&crm)).await;

    assert_eq!(second.code, 0, "{}", second.stderr);
    let written = lines(&out);
    assert_eq!(
        written.len(),
        active.len() + 1,
        "only the change is appended"
    );
    let last = written.last().unwrap();
    assert_eq!(last["record"]["ExternalId"], changed.as_str());
    assert_eq!(last["record"]["Email"], "new@example.com");
    let report: Value = serde_json::from_str(second.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["counts"]["read"], 1);
}

#[tokio::test]
async fn records_go_to_stdout_and_the_report_to_stderr_without_out() {
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("stdout");
    let job = dir.join("job.json");
    fs::write(&job, job_file().to_string()).unwrap();

    let outcome = run_sync(&["--job", job.to_str().unwrap()], environment(&crm)).await;

    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let records: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!records.is_empty());
    assert!(
        records
            .iter()
            .all(|r| r["op"] == "upsert" && r["object"] == "Person")
    );
    let report: Value = serde_json::from_str(outcome.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "Success");
    assert_eq!(report["counts"]["upserted"], records.len());
}

#[tokio::test]
async fn bad_input_exits_2_and_says_what_is_wrong() {
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("bad");
    let job = dir.join("job.json");
    let job_arg = job.to_str().unwrap();

    let missing_flag = run_sync(&[], environment(&crm)).await;
    assert_eq!(missing_flag.code, 2);
    assert!(
        missing_flag.stderr.contains("--job is required"),
        "{}",
        missing_flag.stderr
    );

    fs::write(&job, "{ \"name\": \"broken\" ").unwrap();
    let broken = run_sync(&["--job", job_arg], environment(&crm)).await;
    assert_eq!(broken.code, 2);
    assert!(
        broken.stderr.contains("job definition is not valid"),
        "{}",
        broken.stderr
    );

    fs::write(&job, job_file().to_string()).unwrap();
    let no_env = run_sync(&["--job", job_arg], |_: &str| None).await;
    assert_eq!(no_env.code, 2);
    assert!(
        no_env
            .stderr
            .contains("D365_URL, D365_TENANT_ID, D365_CLIENT_ID, D365_CLIENT_SECRET"),
        "{}",
        no_env.stderr
    );

    let mut invalid = job_file();
    invalid["mappings"][2]["source"] = json!("parentcustomerid_account/name");
    invalid["mappings"][3]["source"] = json!("annualincom");
    fs::write(&job, invalid.to_string()).unwrap();
    let violations = run_sync(&["--job", job_arg], environment(&crm)).await;
    assert_eq!(violations.code, 2);
    let listed: Vec<&str> = violations
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    assert_eq!(listed.len(), 2, "{}", violations.stderr);
    assert!(
        violations.stderr.contains("annualincome"),
        "{}",
        violations.stderr
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_with_exit_1_and_no_secret_in_the_output() {
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("secret");
    let job = dir.join("job.json");
    fs::write(&job, job_file().to_string()).unwrap();
    let env = environment(&crm);
    let wrong = move |name: &str| {
        if name == "D365_CLIENT_SECRET" {
            Some("Wrong~secret.value".to_owned())
        } else {
            env(name)
        }
    };

    let outcome = run_sync(&["--job", job.to_str().unwrap()], wrong).await;

    assert_eq!(outcome.code, 1, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("client secret"),
        "{}",
        outcome.stderr
    );
    assert!(!outcome.stderr.contains("Wrong~secret.value"));
    assert!(!outcome.stdout.contains("Wrong~secret.value"));
}

#[tokio::test]
async fn failed_records_go_to_the_errors_file_and_the_run_still_exits_0() {
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("errors");
    let (job, errors, out) = (
        dir.join("job.json"),
        dir.join("errors.jsonl"),
        dir.join("out.jsonl"),
    );
    let mut definition = job_file();
    definition["target"]["fields"]["Email"] = json!({"type": "string", "max_length": 40});
    fs::write(&job, definition.to_string()).unwrap();
    let active = crm
        .rows("contact")
        .into_iter()
        .find(|row| row["statecode"] == 0)
        .unwrap();
    let bad = active["contactid"].as_str().unwrap().to_owned();
    crm.upsert(
        "contact",
        json!({"contactid": bad, "emailaddress1": format!("{}@example.com", "x".repeat(40))}),
    );

    let outcome = run_sync(
        &[
            "--job",
            job.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--errors",
            errors.to_str().unwrap(),
        ],
        environment(&crm),
    )
    .await;

    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let report: Value = serde_json::from_str(outcome.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "PartialSuccess");
    let failures = lines(&errors);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["record_id"], bad.as_str());
    assert_eq!(failures[0]["field"], "Email");
    assert!(
        lines(&out)
            .iter()
            .all(|l| l["record"]["ExternalId"] != bad.as_str())
    );
}

/// `Email` of every row of `Person` in the SQLite file at `path`, by `ExternalId`.
async fn people(path: &std::path::Path) -> Vec<(String, Option<String>)> {
    let url = format!("sqlite://{}", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows = sqlx::query_as("SELECT \"ExternalId\", \"Email\" FROM \"Person\" ORDER BY 1")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

#[tokio::test]
async fn a_database_keeps_the_records_and_the_checkpoint() {
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("db");
    let (job, db) = (dir.join("job.json"), dir.join("sync.db"));
    fs::write(&job, job_file().to_string()).unwrap();
    let url = format!("sqlite://{}", db.display());
    let args = ["--job", job.to_str().unwrap(), "--db", &url];
    let mut active: Vec<String> = crm
        .rows("contact")
        .into_iter()
        .filter(|row| row["statecode"] == 0)
        .map(|row| row["contactid"].as_str().unwrap().to_owned())
        .collect();
    active.sort();

    let first = run_sync(&args, environment(&crm)).await;

    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        first.stdout.lines().count(),
        1,
        "only the report: {}",
        first.stdout
    );
    let report: Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(report["status"], "Success");
    assert_eq!(report["counts"]["upserted"], active.len());
    let ids: Vec<String> = people(&db).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, active);

    crm.upsert(
        "contact",
        json!({"contactid": active[1], "emailaddress1": "moved@example.com"}),
    );
    let second = run_sync(&args, environment(&crm)).await;

    assert_eq!(second.code, 0, "{}", second.stderr);
    let report: Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(
        report["counts"]["read"], 1,
        "resumed from the database's checkpoint"
    );
    let rows = people(&db).await;
    assert_eq!(rows.len(), active.len());
    assert_eq!(
        rows[1],
        (active[1].clone(), Some("moved@example.com".to_owned()))
    );
}

#[tokio::test]
async fn db_with_out_or_a_url_of_another_database_exits_2() {
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("bad-db");
    let job = dir.join("job.json");
    fs::write(&job, job_file().to_string()).unwrap();
    let job_arg = job.to_str().unwrap();

    let both = run_sync(
        &[
            "--job",
            job_arg,
            "--db",
            "sqlite://x.db",
            "--out",
            "x.jsonl",
        ],
        environment(&crm),
    )
    .await;
    let other = run_sync(
        &["--job", job_arg, "--db", "mysql://root@localhost/crm"],
        environment(&crm),
    )
    .await;

    assert_eq!(both.code, 2);
    assert!(
        both.stderr.contains("leave out --state and --out"),
        "{}",
        both.stderr
    );
    assert_eq!(other.code, 2);
    assert!(other.stderr.contains("postgres://"), "{}", other.stderr);
}

#[tokio::test]
async fn a_full_disk_is_reported_with_the_path_and_the_reason() {
    if !std::path::Path::new("/dev/full").exists() {
        return; // only Linux has a device that is always full
    }
    let crm = StandIn::with_sample_data().await;
    let dir = scratch("full");
    let job = dir.join("job.json");
    fs::write(&job, job_file().to_string()).unwrap();

    let outcome = run_sync(
        &["--job", job.to_str().unwrap(), "--out", "/dev/full"],
        environment(&crm),
    )
    .await;

    assert_ne!(outcome.code, 0);
    let said = format!("{}{}", outcome.stdout, outcome.stderr);
    assert!(
        said.contains("could not write to /dev/full: No space left on device"),
        "{said}"
    );
}
