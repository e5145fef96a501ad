//! Sink throughput: 100,000 account-shaped records of 13 fields upserted in batches of 5000
//! (each with its checkpoint, as a job writes them) into a fresh table of the SQLite sink and
//! of the PostgreSQL sink, against the JSON Lines sink writing the same batches to a file.
//!
//! ```sh
//! D365_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench sql_sinks
//! ```
//!
//! Criterion reports records per second ("elements"). Without `D365_TEST_POSTGRES_URL` the
//! PostgreSQL sink is left out; the SQLite file and the JSON Lines file go to the system's
//! temporary folder.

use chrono::{DateTime, NaiveDate, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use d365_connector::{
    BatchCheckpoint, JsonLinesSink, Number, Operation, RecordSink, SqlSink, TargetRecord,
    TargetSchema, TargetValue,
};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

const RECORDS: usize = 100_000;
const BATCH: usize = 5000;

fn target() -> TargetSchema {
    serde_json::from_value(serde_json::json!({
        "object": "Company",
        "fields": { "Id": "id", "Name": {"type": "string", "max_length": 160},
                    "AccountNumber": "string", "Revenue": "number", "Employees": "integer",
                    "Industry": "string", "City": "string", "Website": "string",
                    "Active": "boolean", "Since": "date", "Modified": "datetime",
                    "OwnerId": "id", "Rating": "number" }
    }))
    .expect("the bench target parses")
}

/// Record `i` as a job converts an account: Money with every digit, a lookup id, a label.
fn account(i: usize) -> Operation {
    let number = |text: String| TargetValue::Number(Number::parse(&text).expect("a number"));
    let text = |text: String| TargetValue::String(text);
    let mut record = TargetRecord::new();
    record.insert(
        "Id",
        TargetValue::Id(format!("00000000-0000-0000-0000-{i:012}")),
    );
    record.insert("Name", text(format!("O'Company {i}; \"Ltd\"")));
    record.insert("AccountNumber", text(format!("ACC-{i}")));
    record.insert(
        "Revenue",
        number(format!("922337203685477.{:04}", i % 10_000)),
    );
    record.insert("Employees", number((i % 5000).to_string()));
    record.insert("Industry", text("Business Services".to_owned()));
    record.insert("City", text("Redmond".to_owned()));
    record.insert(
        "Website",
        text(format!("https://www.company{i}.example.com")),
    );
    record.insert("Active", TargetValue::Bool(i % 7 != 0));
    let since =
        NaiveDate::from_ymd_opt(2020, 1, 1).expect("a date") + chrono::Days::new((i % 1500) as u64);
    record.insert("Since", TargetValue::Date(since));
    let modified: DateTime<Utc> = "2024-06-12T14:13:25Z".parse().expect("an instant");
    record.insert("Modified", TargetValue::DateTime(modified));
    record.insert(
        "OwnerId",
        TargetValue::Id(format!("11111111-0000-0000-0000-{:012}", i % 50)),
    );
    record.insert("Rating", number(format!("{}.5", i % 100)));
    let mut key = TargetRecord::new();
    key.insert("Id", record.get("Id").cloned().expect("an id"));
    Operation::Upsert { key, record }
}

/// Writes every batch, as a job does; returns the time taken.
async fn write_all(sink: &dyn RecordSink, batches: &[Vec<Operation>]) -> Duration {
    let started = Instant::now();
    for batch in batches {
        let checkpoint = BatchCheckpoint {
            job: "bench",
            checkpoint: None,
        };
        let results = sink
            .write_with_checkpoint("Company", batch, checkpoint)
            .await
            .expect("the batch is written");
        assert!(results.iter().all(Result::is_ok));
        sink.flush().await.expect("the sink flushes");
    }
    started.elapsed()
}

/// Where a bench run writes.
enum Target {
    /// A JSON Lines file.
    JsonLines(PathBuf),
    /// A SQL database URL.
    Sql(String),
}

impl Target {
    /// A sink writing to an empty file or an empty `Company` table.
    async fn fresh(&self) -> Box<dyn RecordSink> {
        match self {
            Target::JsonLines(path) => {
                let file = File::create(path).expect("the bench file is created");
                Box::new(JsonLinesSink::new(BufWriter::new(file)))
            }
            Target::Sql(url) => {
                run_sql(url, "DROP TABLE IF EXISTS \"Company\"").await;
                let sink = SqlSink::connect(url)
                    .await
                    .expect("the database is reachable");
                sink.prepare(&target(), &["Id".to_owned()])
                    .await
                    .expect("the table is created");
                Box::new(sink)
            }
        }
    }

    /// Times `iterations` runs, each into a fresh sink.
    async fn time(&self, iterations: u64, batches: &[Vec<Operation>]) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let sink = self.fresh().await;
            total += write_all(sink.as_ref(), batches).await;
        }
        total
    }
}

/// Runs `sql` on the database at `url`, outside any sink.
async fn run_sql(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .expect("a SQLite URL")
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("SQLite opens");
        sqlx::raw_sql(sql)
            .execute(&pool)
            .await
            .expect("the statement runs");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("PostgreSQL is reachable");
        sqlx::raw_sql(sql)
            .execute(&pool)
            .await
            .expect("the statement runs");
        pool.close().await;
    }
}

fn sinks(c: &mut Criterion) {
    let operations: Vec<Operation> = (0..RECORDS).map(account).collect();
    let batches: Vec<Vec<Operation>> = operations
        .chunks(BATCH)
        .map(<[Operation]>::to_vec)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let folder = std::env::temp_dir();
    let mut targets = vec![
        (
            "json_lines",
            Target::JsonLines(folder.join("d365-bench.jsonl")),
        ),
        (
            "sqlite",
            Target::Sql(format!(
                "sqlite://{}",
                folder.join("d365-bench.db").display()
            )),
        ),
    ];
    match std::env::var("D365_TEST_POSTGRES_URL") {
        Ok(base) => {
            let schema = "DROP SCHEMA IF EXISTS d365_bench CASCADE; CREATE SCHEMA d365_bench";
            runtime.block_on(run_sql(&base, schema));
            let separator = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{separator}options=-c%20search_path%3Dd365_bench");
            targets.push(("postgres", Target::Sql(url)));
        }
        Err(_) => eprintln!("D365_TEST_POSTGRES_URL is not set: the PostgreSQL sink is left out"),
    }

    let mut group = c.benchmark_group("sinks_100k_accounts");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    for (name, target) in &targets {
        group.bench_function(*name, |b| {
            b.iter_custom(|iterations| runtime.block_on(target.time(iterations, &batches)))
        });
    }
    group.finish();
}

criterion_group!(benches, sinks);
criterion_main!(benches);
