//! `SqlSink` on PostgreSQL: every scenario of `tests/sql/mod.rs` in a schema of its own.
//!
//! The tests need a server: they are ignored unless run with `--include-ignored` (as `.ci/run`
//! does) and read its URL from `D365_TEST_POSTGRES_URL`
//! (`postgres://postgres@127.0.0.1:5432/test`).

mod sql;

use d365_connector::{ErrorKind, RecordSink, SqlSink, TargetFieldType, TargetSchema};
use serde_json::json;
use sql::TestDatabase;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

/// A schema for one test, dropped and created anew.
struct Postgres {
    url: String,
}

impl Postgres {
    async fn new(test: &str) -> Self {
        let base = std::env::var("D365_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("set D365_TEST_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/test) to run the PostgreSQL tests")
        });
        let schema = format!("d365_test_{test}");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap();
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .execute(&admin)
        .await
        .unwrap();
        admin.close().await;
        let separator = if base.contains('?') { '&' } else { '?' };
        Self {
            url: format!("{base}{separator}options=-c%20search_path%3D{schema}"),
        }
    }

    async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .unwrap()
    }
}

impl TestDatabase for Postgres {
    async fn sink(&self) -> SqlSink {
        SqlSink::connect(&self.url).await.unwrap()
    }

    async fn execute(&self, sql: &str) {
        let pool = self.pool().await;
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }

    async fn texts(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let pool = self.pool().await;
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows.iter()
            .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
            .collect()
    }

    fn as_text(&self, column: &str, field_type: TargetFieldType) -> String {
        match field_type {
            TargetFieldType::DateTime => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
            }
            TargetFieldType::Date => format!("to_char({column}, 'YYYY-MM-DD')"),
            _ => format!("{column}::text"),
        }
    }

    fn rounding_type(&self) -> &'static str {
        "double precision"
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set D365_TEST_POSTGRES_URL and run with --include-ignored"]
async fn a_full_and_an_incremental_sync_leave_an_exact_mirror() {
    sql::full_and_incremental_sync_mirror_dynamics(&Postgres::new("mirror").await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set D365_TEST_POSTGRES_URL and run with --include-ignored"]
async fn a_resync_removes_what_dynamics_deleted() {
    sql::a_resync_removes_what_dynamics_deleted(&Postgres::new("resync").await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set D365_TEST_POSTGRES_URL and run with --include-ignored"]
async fn a_killed_run_resumes_without_repeating_or_missing_a_batch() {
    sql::a_killed_run_resumes_without_repeating_or_missing_a_batch(&Postgres::new("killed").await)
        .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set D365_TEST_POSTGRES_URL and run with --include-ignored"]
async fn an_incompatible_table_is_refused_before_writing() {
    sql::an_incompatible_table_is_refused_before_writing(&Postgres::new("incompatible").await)
        .await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set D365_TEST_POSTGRES_URL and run with --include-ignored"]
async fn hostile_names_work_and_inject_nothing() {
    sql::hostile_names_work_and_inject_nothing(&Postgres::new("hostile").await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set D365_TEST_POSTGRES_URL and run with --include-ignored"]
async fn a_refused_record_fails_alone() {
    sql::a_refused_record_fails_alone(&Postgres::new("refused").await).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set D365_TEST_POSTGRES_URL and run with --include-ignored"]
async fn a_name_postgresql_would_cut_is_refused() {
    let db = Postgres::new("long_names").await;
    let sink = db.sink().await;
    let long = "A field name longer than the sixty-three bytes PostgreSQL keeps in a name";
    let target: TargetSchema = serde_json::from_value(json!({
        "object": "Person", "fields": { "Id": "id", long: "string" }
    }))
    .unwrap();

    let error = sink.prepare(&target, &["Id".to_owned()]).await.unwrap_err();

    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains(long), "{error}");
    assert!(error.to_string().contains("63"), "{error}");
}
