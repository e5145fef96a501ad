//! `SqlSink` on SQLite: every scenario of `tests/sql/mod.rs` on a file of its own.

mod sql;

use d365_connector::{ErrorKind, SqlSink, TargetFieldType};
use sql::TestDatabase;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::path::PathBuf;
use std::str::FromStr;

/// A SQLite file for one test, removed first.
struct Sqlite {
    path: PathBuf,
}

impl Sqlite {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!("d365-sql-{}-{test}.db", std::process::id()));
        let _ = std::fs::remove_file(&path);
        Self { path }
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn pool(&self) -> SqlitePool {
        let options = SqliteConnectOptions::from_str(&self.url())
            .unwrap()
            .create_if_missing(true);
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap()
    }
}

impl TestDatabase for Sqlite {
    async fn sink(&self) -> SqlSink {
        SqlSink::connect(&self.url()).await.unwrap()
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
            TargetFieldType::Boolean => {
                format!("CASE {column} WHEN 1 THEN 'true' WHEN 0 THEN 'false' END")
            }
            _ => format!("CAST({column} AS TEXT)"),
        }
    }

    fn rounding_type(&self) -> &'static str {
        "REAL"
    }
}

#[tokio::test]
async fn a_full_and_an_incremental_sync_leave_an_exact_mirror() {
    sql::full_and_incremental_sync_mirror_dynamics(&Sqlite::new("mirror")).await;
}

#[tokio::test]
async fn a_resync_removes_what_dynamics_deleted() {
    sql::a_resync_removes_what_dynamics_deleted(&Sqlite::new("resync")).await;
}

#[tokio::test]
async fn a_killed_run_resumes_without_repeating_or_missing_a_batch() {
    sql::a_killed_run_resumes_without_repeating_or_missing_a_batch(&Sqlite::new("killed")).await;
}

#[tokio::test]
async fn an_incompatible_table_is_refused_before_writing() {
    sql::an_incompatible_table_is_refused_before_writing(&Sqlite::new("incompatible")).await;
}

#[tokio::test]
async fn hostile_names_work_and_inject_nothing() {
    sql::hostile_names_work_and_inject_nothing(&Sqlite::new("hostile")).await;
}

#[tokio::test]
async fn a_refused_record_fails_alone() {
    sql::a_refused_record_fails_alone(&Sqlite::new("refused")).await;
}

#[tokio::test]
async fn numbers_are_stored_as_the_digits_written() {
    let db = Sqlite::new("digits");
    sql::full_and_incremental_sync_mirror_dynamics(&db).await;
    let types = db
        .texts("SELECT DISTINCT typeof(\"Amount\") || ' ' || typeof(\"Big\") FROM \"Ledger\"")
        .await;
    assert_eq!(types, [[Some("text integer".to_owned())]]);
}

#[tokio::test]
async fn a_url_of_another_database_says_which_ones_work() {
    let error = SqlSink::connect("mysql://root@localhost/test")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("sqlite://"), "{error}");
    assert!(error.to_string().contains("postgres://"), "{error}");
}
