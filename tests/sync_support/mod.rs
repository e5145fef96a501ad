//! What the tests of the `sync` example share: scratch folders, the contacts job, the
//! stand-in's environment and a run of the command with its output captured.
// Each test binary uses some of these.
#![allow(dead_code)]

use crate::sync_example;
use d365_connector::testkit::StandIn;
use serde_json::{Value, json};
use std::fs;
use std::path::PathBuf;

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("d365-sync-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn job_file() -> Value {
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

pub fn environment(crm: &StandIn) -> impl Fn(&str) -> Option<String> + use<> {
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

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run_sync(args: &[&str], env: impl Fn(&str) -> Option<String>) -> Outcome {
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

pub fn lines(path: &PathBuf) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Paths of one scratch folder: the job file (written with `job`), state, out and errors.
pub struct Paths {
    pub dir: PathBuf,
    pub job: String,
    pub state: String,
    pub out: String,
    pub errors: String,
}

impl Paths {
    pub fn new(name: &str, job: &Value) -> Self {
        let dir = scratch(name);
        let text = |file: &str| dir.join(file).to_str().unwrap().to_owned();
        let paths = Paths {
            job: text("job.json"),
            state: text("state.json"),
            out: text("out.jsonl"),
            errors: text("errors.jsonl"),
            dir,
        };
        fs::write(&paths.job, job.to_string()).unwrap();
        paths
    }

    /// `--job`, `--state`, `--out` and `--errors`.
    pub fn all(&self) -> Vec<&str> {
        vec![
            "--job",
            &self.job,
            "--state",
            &self.state,
            "--out",
            &self.out,
            "--errors",
            &self.errors,
        ]
    }
}
