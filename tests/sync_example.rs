//! The `sync` example's code path end to end on the stand-in instance, with a job file in the
//! public format.

#[path = "../examples/sync/main.rs"]
mod sync_example;
mod sync_support;

use d365_connector::testkit::{AccountShape, StandIn};
use d365_connector::{CheckpointStore, FileCheckpointStore};
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sync_support::{Paths, environment, job_file, lines, run_sync, scratch};

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
        missing_flag
            .stderr
            .contains("required arguments were not provided")
            && missing_flag.stderr.contains("--job"),
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

// ---- The command as an operator's tool (issue 12) ----

/// Accounts read 20 a page, in one sequential read, without a filter (so the table's count is
/// the expected count).
fn accounts_job() -> Value {
    json!({
        "name": "Accounts to Company",
        "source": { "entity": "account", "incremental": "modified_on", "page_size": 20,
                    "parallelism": 1 },
        "target": { "object": "Company",
                    "fields": { "DynamicsId": "id", "Name": "string" },
                    "required": ["DynamicsId"] },
        "mode": "upsert",
        "identifiers": ["DynamicsId"],
        "mappings": [
            { "source": "accountid", "target": "DynamicsId" },
            { "source": "name", "target": "Name" }
        ]
    })
}

/// A stand-in with the sample data and 300 more accounts.
async fn many_accounts() -> StandIn {
    let crm = StandIn::with_sample_data().await;
    crm.add_accounts(300, AccountShape::default());
    crm
}

/// Every account id, sorted.
fn account_ids(crm: &StandIn) -> Vec<String> {
    let mut ids: Vec<String> = crm
        .rows("account")
        .iter()
        .map(|row| row["accountid"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The `DynamicsId`s written to `path`, sorted (repeats kept), after checking every line is a
/// JSON object.
fn written_ids(path: &Path) -> Vec<String> {
    let mut ids: Vec<String> = lines(&path.to_path_buf())
        .iter()
        .map(|line| line["record"]["DynamicsId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// `args` as owned strings.
fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// Waits until `path` holds at least `n` lines.
async fn until_lines(path: &str, n: usize) {
    for _ in 0..2000 {
        let count = fs::read_to_string(path).map_or(0, |t| t.lines().count());
        if count >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{path} never held {n} lines");
}

#[tokio::test]
async fn help_and_version_exit_0_and_list_the_flags_and_exit_codes() {
    let help = run_sync(&["--help"], |_: &str| None).await;
    let version = run_sync(&["--version"], |_: &str| None).await;

    assert_eq!(help.code, 0, "{}", help.stderr);
    for flag in [
        "--job",
        "--state",
        "--out",
        "--errors",
        "--db",
        "--request-timeout",
        "--parallelism",
        "--quiet",
        "--dry-run",
        "--force-resync",
        "Exit codes",
        "143",
        "RUST_LOG",
    ] {
        assert!(help.stdout.contains(flag), "{flag} in {}", help.stdout);
    }
    assert_eq!(version.code, 0);
    assert!(version.stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn request_timeout_and_parallelism_are_read_and_bad_values_exit_2() {
    let args =
        sync_example::Args::parse(owned(&["--job", "j.json", "--request-timeout", "2.5"])).unwrap();
    assert_eq!(
        args.client_options().request_timeout(),
        Duration::from_millis(2500)
    );
    for (flag, value, says) in [
        ("--request-timeout", "0", "more than 0"),
        ("--request-timeout", "soon", "not a number of seconds"),
        ("--parallelism", "0", "parallelism must be"),
    ] {
        let outcome = run_sync(&["--job", "j.json", flag, value], |_: &str| None).await;
        assert_eq!(outcome.code, 2, "{flag} {value}");
        assert!(outcome.stderr.contains(says), "{}", outcome.stderr);
    }

    let crm = many_accounts().await;
    let paths = Paths::new("parallelism", &accounts_job());
    let mut args = paths.all();
    args.extend(["--parallelism", "4"]);
    let outcome = run_sync(&args, environment(&crm)).await;
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let ranged = crm
        .api_requests()
        .iter()
        .filter(|r| r.path().ends_with("/accounts"))
        .filter(|r| r.path_and_query.contains("accountid%20gt"))
        .count();
    assert!(ranged > 0, "--parallelism 4 divides the read into ranges");
    assert_eq!(written_ids(Path::new(&paths.out)), account_ids(&crm));
}

#[tokio::test]
async fn out_may_be_dev_null_or_a_named_pipe() {
    let crm = many_accounts().await;
    let paths = Paths::new("devices", &accounts_job());
    let to_null = run_sync(
        &["--job", &paths.job, "--out", "/dev/null"],
        environment(&crm),
    )
    .await;
    assert_eq!(to_null.code, 0, "{}", to_null.stderr);
    let report: Value = serde_json::from_str(to_null.stdout.trim()).unwrap();
    assert_eq!(report["status"], "Success");

    let pipe = paths.dir.join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let pipe = pipe.clone();
        std::thread::spawn(move || fs::read_to_string(pipe).unwrap())
    };
    let to_pipe = run_sync(
        &["--job", &paths.job, "--out", pipe.to_str().unwrap()],
        environment(&crm),
    )
    .await;
    assert_eq!(to_pipe.code, 0, "{}", to_pipe.stderr);
    let received = reader.join().unwrap();
    let mut ids: Vec<String> = received
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["record"]["DynamicsId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ids.sort();
    assert_eq!(ids, account_ids(&crm));
}

#[tokio::test]
async fn a_stop_mid_run_saves_the_checkpoint_and_the_resumed_run_rewrites_at_most_one_batch() {
    let crm = many_accounts().await;
    // 20-row pages take about 40 ms each, so the stop comes while a batch is in flight.
    crm.set_server_time(Duration::from_secs(10));
    let paths = Paths::new("sigterm", &accounts_job());
    let interrupt = sync_example::Interrupt::default();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let console = sync_example::Console {
        stdout: &mut stdout,
        stderr: &mut stderr,
        terminal: false,
    };
    let run = sync_example::run_with(owned(&paths.all()), environment(&crm), console, &interrupt);
    let stop = async {
        until_lines(&paths.out, 40).await;
        assert!(interrupt.stop(sync_example::EXIT_SIGTERM));
    };
    let (code, ()) = futures::join!(run, stop);

    let stderr = String::from_utf8(stderr).unwrap();
    assert_eq!(code, 143, "{stderr}");
    let report: Value = serde_json::from_str(String::from_utf8(stdout).unwrap().trim()).unwrap();
    assert_eq!(report["status"], "Cancelled");
    let first = written_ids(Path::new(&paths.out));
    let all = account_ids(&crm);
    assert!(first.len() < all.len(), "stopped before the end");
    assert_eq!(
        first.len() as u64,
        report["counts"]["upserted"].as_u64().unwrap()
    );
    assert!(stderr.contains("cancelled"), "{stderr}");

    crm.set_server_time(Duration::ZERO);
    let resumed = run_sync(&paths.all(), environment(&crm)).await;

    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let mut written = written_ids(Path::new(&paths.out));
    let total = written.len();
    written.dedup();
    assert_eq!(written, all, "every record, valid lines");
    assert!(
        total - all.len() <= 20,
        "at most one batch again: {}",
        total - all.len()
    );
}

#[tokio::test]
async fn a_torn_last_line_is_cut_off_with_a_warning_before_appending() {
    let crm = many_accounts().await;
    let paths = Paths::new("torn", &accounts_job());
    fs::write(
        &paths.out,
        "{\"op\":\"upsert\",\"object\":\"Company\",\"key\":{\"DynamicsId\":\"a\"}}\n{\"op\":\"ups",
    )
    .unwrap();

    let outcome = run_sync(&paths.all(), environment(&crm)).await;

    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("cut off a torn last line of 10 bytes"),
        "{}",
        outcome.stderr
    );
    let written = lines(&PathBuf::from(&paths.out));
    assert_eq!(written.len(), 1 + account_ids(&crm).len());
}

#[tokio::test]
async fn a_second_run_on_the_same_files_is_refused_and_a_stale_lock_taken_over() {
    let crm = many_accounts().await;
    crm.set_server_time(Duration::from_secs(5));
    let paths = Paths::new("lock", &accounts_job());
    let lock = format!("{}.lock", paths.state);
    let args = paths.all();
    let first = run_sync(&args, environment(&crm));
    let second = async {
        until_lines(&paths.out, 20).await;
        run_sync(&paths.all(), environment(&crm)).await
    };
    let (first, second) = futures::join!(first, second);

    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(second.code, 2);
    let pid = std::process::id().to_string();
    assert!(
        second
            .stderr
            .contains(&format!("another sync (process {pid})")),
        "{}",
        second.stderr
    );
    assert_eq!(written_ids(Path::new(&paths.out)), account_ids(&crm));
    assert!(!Path::new(&lock).exists(), "removed at the end");

    // A process killed with SIGKILL leaves its lock file, but not its lock.
    crm.set_server_time(Duration::ZERO);
    fs::write(&lock, "999999").unwrap();
    let after_crash = run_sync(&paths.all(), environment(&crm)).await;
    assert_eq!(after_crash.code, 0, "{}", after_crash.stderr);
    assert!(
        after_crash
            .stderr
            .contains("of process 999999, which ended"),
        "{}",
        after_crash.stderr
    );
}

#[tokio::test]
async fn two_flags_naming_one_file_are_refused_and_nothing_is_touched() {
    let crm = many_accounts().await;
    let paths = Paths::new("same", &accounts_job());
    fs::write(&paths.out, "{\"kept\":true}\n").unwrap();
    let alias = paths.dir.join(".").join("out.jsonl");

    for (flag, other) in [
        ("--state", alias.to_str().unwrap()),
        ("--errors", &paths.out),
    ] {
        let outcome = run_sync(
            &["--job", &paths.job, "--out", &paths.out, flag, other],
            environment(&crm),
        )
        .await;
        assert_eq!(outcome.code, 2, "{flag}");
        let said = &outcome.stderr;
        assert!(said.contains(" both name "), "{said}");
        assert!(said.contains("--out") && said.contains(flag), "{said}");
    }
    assert_eq!(fs::read_to_string(&paths.out).unwrap(), "{\"kept\":true}\n");
    assert!(crm.api_requests().is_empty(), "nothing read");
}

#[tokio::test]
async fn unwritable_paths_are_refused_before_anything_is_read() {
    let crm = many_accounts().await;
    let paths = Paths::new("unwritable", &accounts_job());
    let missing = paths.dir.join("no-such-folder").join("file.json");
    let missing = missing.to_str().unwrap();

    for flag in ["--state", "--errors", "--out"] {
        let outcome = run_sync(&["--job", &paths.job, flag, missing], environment(&crm)).await;
        assert_eq!(outcome.code, 2, "{flag}: {}", outcome.stderr);
        assert!(
            outcome
                .stderr
                .starts_with(&format!("{flag} {missing}: its folder")),
            "{}",
            outcome.stderr
        );
        assert!(outcome.stderr.contains("create it"), "{}", outcome.stderr);
    }
    assert!(crm.api_requests().is_empty(), "nothing read");
}

#[tokio::test]
async fn failed_records_are_appended_to_errors_and_never_erased() {
    let crm = StandIn::with_sample_data().await;
    let mut definition = job_file();
    definition["target"]["fields"]["Email"] = json!({"type": "string", "max_length": 40});
    let paths = Paths::new("errors-kept", &definition);
    let active: Vec<String> = crm
        .rows("contact")
        .into_iter()
        .filter(|row| row["statecode"] == 0)
        .map(|row| row["contactid"].as_str().unwrap().to_owned())
        .collect();
    let make_bad = |id: &str| {
        crm.upsert(
            "contact",
            json!({"contactid": id, "emailaddress1": format!("{}@example.com", "x".repeat(40))}),
        );
    };
    make_bad(&active[0]);

    let first = run_sync(&paths.all(), environment(&crm)).await;
    let quiet = run_sync(&paths.all(), environment(&crm)).await;
    let after_quiet = lines(&PathBuf::from(&paths.errors));
    make_bad(&active[1]);
    crm.upsert(
        "contact",
        json!({"contactid": active[2], "emailaddress1": "good@example.com"}),
    );
    let third = run_sync(&paths.all(), environment(&crm)).await;

    for outcome in [&first, &quiet, &third] {
        assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    }
    assert_eq!(after_quiet.len(), 1, "kept by a run without failures");
    let failed: Vec<Value> = lines(&PathBuf::from(&paths.errors))
        .iter()
        .map(|l| l["record_id"].clone())
        .collect();
    assert_eq!(failed, [json!(active[0]), json!(active[1])]);
}

#[tokio::test]
async fn a_state_made_for_another_job_is_refused_unless_forced() {
    let crm = many_accounts().await;
    let paths = Paths::new("other-state", &accounts_job());
    let accounts = run_sync(&paths.all(), environment(&crm)).await;
    assert_eq!(accounts.code, 0, "{}", accounts.stderr);
    let contacts = paths.dir.join("contacts.json");
    fs::write(&contacts, job_file().to_string()).unwrap();
    let mut same_name = job_file();
    same_name["name"] = json!("Accounts to Company");
    let renamed = paths.dir.join("renamed.json");
    fs::write(&renamed, same_name.to_string()).unwrap();
    let with_job = |job: &PathBuf| {
        let mut args = paths.all();
        args[1] = job.to_str().unwrap();
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let before = fs::read_to_string(&paths.state).unwrap();

    let other_job = run_sync(&borrowed(&with_job(&contacts)), environment(&crm)).await;
    let other_table = run_sync(&borrowed(&with_job(&renamed)), environment(&crm)).await;

    assert_eq!(other_job.code, 2, "{}", other_job.stderr);
    assert!(
        other_job.stderr.contains(
            "holds the checkpoints of `Accounts to Company` but none of job `Contacts to Person`"
        ),
        "{}",
        other_job.stderr
    );
    assert_eq!(other_table.code, 2, "{}", other_table.stderr);
    assert!(
        other_table
            .stderr
            .contains("for the table `account`, but this job reads `contact`"),
        "{}",
        other_table.stderr
    );
    assert!(other_table.stderr.contains("--force-resync"));
    assert_eq!(
        fs::read_to_string(&paths.state).unwrap(),
        before,
        "untouched"
    );

    let mut forced = with_job(&contacts);
    forced.push("--force-resync".to_owned());
    let outcome = run_sync(&borrowed(&forced), environment(&crm)).await;
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let state = FileCheckpointStore::new(&paths.state);
    let saved = state.load("Contacts to Person").await.unwrap().unwrap();
    assert_eq!(saved.entity(), "contact");
}

fn borrowed(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn an_unknown_entity_exits_2_and_a_run_whose_every_record_failed_exits_1() {
    let crm = many_accounts().await;
    let mut unknown = accounts_job();
    unknown["source"]["entity"] = json!("acount");
    let paths = Paths::new("exit-codes", &unknown);
    let outcome = run_sync(&paths.all(), environment(&crm)).await;
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("`acount`, which is not a table of this environment"),
        "{}",
        outcome.stderr
    );

    let mut all_fail = accounts_job();
    all_fail["target"]["fields"]["DynamicsId"] = json!({"type": "string", "max_length": 5});
    fs::write(&paths.job, all_fail.to_string()).unwrap();
    let outcome = run_sync(&paths.all(), environment(&crm)).await;
    assert_eq!(outcome.code, 1, "{}", outcome.stderr);
    let report: Value = serde_json::from_str(outcome.stdout.trim()).unwrap();
    assert_eq!(report["status"], "Failed");
    assert_eq!(report["counts"]["failed"], account_ids(&crm).len());
    assert_eq!(report["error"]["kind"], "mapping");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{report}"
    );
    assert_eq!(
        lines(&PathBuf::from(&paths.errors)).len(),
        account_ids(&crm).len()
    );
}

#[tokio::test]
async fn dry_run_previews_the_first_records_and_writes_nothing() {
    let crm = many_accounts().await;
    let paths = Paths::new("dry-run", &accounts_job());
    let mut args = paths.all();
    args.push("--dry-run");

    let outcome = run_sync(&args, environment(&crm)).await;

    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let preview: Vec<Value> = outcome
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(preview.len(), 10);
    assert!(preview.iter().all(|op| op["object"] == "Company"));
    assert!(
        outcome.stderr.contains("the first page held 20 records"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("nothing was written"),
        "{}",
        outcome.stderr
    );
    let left: Vec<_> = fs::read_dir(&paths.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["job.json"], "no file written");
}

#[tokio::test]
async fn progress_lines_show_the_expected_count_and_quiet_shows_none() {
    let crm = many_accounts().await;
    let paths = Paths::new("progress", &accounts_job());
    let total = account_ids(&crm).len();
    let mut args = paths.all();
    args.extend(["--progress-every", "0"]);

    let shown = run_sync(&args, environment(&crm)).await;

    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let progress: Vec<&str> = shown
        .stderr
        .lines()
        .filter(|l| l.starts_with("Accounts to Company: read "))
        .collect();
    assert!(progress.len() >= 15, "a line per batch: {}", shown.stderr);
    assert!(
        progress[0].contains(&format!("read 20 of about {total}")),
        "{}",
        progress[0]
    );
    assert!(progress[0].contains("records/s, about"), "{}", progress[0]);
    let report: Value = serde_json::from_str(shown.stdout.trim()).unwrap();
    assert_eq!(report["counts"]["expected"], total);
    assert_eq!(report["counts"]["read"], total);

    let quiet_paths = Paths::new("quiet", &accounts_job());
    let mut quiet_args = quiet_paths.all();
    quiet_args.extend(["--progress-every", "0", "--quiet"]);
    let quiet = run_sync(&quiet_args, environment(&crm)).await;
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "");
}

/// The arguments (JSON) of the command a child process runs in
/// `sigterm_to_a_child_process_exits_143_and_loses_nothing`.
const CHILD_ARGS: &str = "D365_SYNC_TEST_CHILD_ARGS";

/// Runs the command as `main` does (real signals) when started by the test below; otherwise
/// (ignored) does nothing.
#[tokio::test]
#[ignore = "the child process of sigterm_to_a_child_process_exits_143_and_loses_nothing"]
async fn child_process_runs_the_command() {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let args: Vec<String> = serde_json::from_str(&args).unwrap();
    let code = sync_example::command_line(args, |name| std::env::var(name).ok()).await;
    std::process::exit(code);
}

#[tokio::test]
async fn sigterm_to_a_child_process_exits_143_and_loses_nothing() {
    let crm = many_accounts().await;
    crm.set_server_time(Duration::from_secs(10));
    let paths = Paths::new("child", &accounts_job());
    let env = environment(&crm);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "child_process_runs_the_command",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ARGS, serde_json::to_string(&paths.all()).unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for name in [
        "D365_URL",
        "D365_TENANT_ID",
        "D365_CLIENT_ID",
        "D365_CLIENT_SECRET",
        "D365_AUTHORITY",
    ] {
        child.env(name, env(name).unwrap());
    }
    let child = child.spawn().unwrap();

    until_lines(&paths.out, 40).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("stopping after the current batch"),
        "{stderr}"
    );
    let stopped_at = written_ids(Path::new(&paths.out)).len();
    let saved = FileCheckpointStore::new(&paths.state)
        .load("Accounts to Company")
        .await
        .unwrap();
    assert!(saved.is_some(), "the checkpoint was saved");

    crm.set_server_time(Duration::ZERO);
    let resumed = run_sync(&paths.all(), environment(&crm)).await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let mut written = written_ids(Path::new(&paths.out));
    let total = written.len();
    written.dedup();
    assert_eq!(written, account_ids(&crm));
    assert!(total - written.len() <= 20, "at most one batch again");
    assert!(stopped_at < total);
}
