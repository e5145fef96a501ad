//! `SqlSink`: typed tables in SQLite or PostgreSQL, written with set-based statements, with the
//! checkpoint committed in the same transaction as each batch.

mod backend;
mod batch;
mod engine;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod statement;
mod table;

use super::{BatchCheckpoint, KeySet, Operation, RecordSink, WriteResult};
use crate::checkpoint_store::CheckpointStore;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::TargetSchema;
use crate::source::Checkpoint;
use async_trait::async_trait;
use engine::Engine;
use std::fmt;

/// A sink into a SQL database: SQLite (feature `sqlite`) or PostgreSQL (feature `postgres`).
///
/// - Each target object is a table of the same name, created from the job's target schema when
///   it is missing (one column per field, the identifiers as primary key) and checked before
///   anything is written when it exists.
/// - Each batch is one transaction of set-based statements; a record the table cannot take
///   (a duplicate key in `insert` mode, an `update` of a missing record) fails alone.
/// - The job's checkpoint is saved in the table `d365_checkpoints` in the same transaction, so
///   data and checkpoint always agree: load it with [`CheckpointStore::load`] before a run, and
///   even `insert` mode writes every batch exactly once.
/// - Names are quoted identifiers and values bound parameters: no name or value becomes SQL.
pub struct SqlSink {
    engine: Box<dyn SinkAndStore>,
    database: &'static str,
}

/// What a database engine is to `SqlSink`.
trait SinkAndStore: RecordSink + CheckpointStore {}

impl<T: RecordSink + CheckpointStore> SinkAndStore for T {}

impl SqlSink {
    /// Connects to `url`: `sqlite://PATH` (the file is created when missing) or
    /// `postgres://USER@HOST:PORT/DB`, and creates the checkpoint table when it is missing.
    pub async fn connect(url: &str) -> Result<Self> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Self::connect_sqlite(url).await,
            Some("postgres" | "postgresql") => Self::connect_postgres(url).await,
            _ => Err(Error::config(
                "the database URL must start with sqlite:// (sqlite://PATH) or postgres:// (postgres://USER@HOST:PORT/DB)",
            )),
        }
    }

    /// A sink on a SQLite pool of your own (give it one connection: SQLite has one writer).
    #[cfg(feature = "sqlite")]
    pub async fn from_sqlite(pool: sqlx::SqlitePool) -> Result<Self> {
        Ok(Self {
            engine: Box::new(Engine::new(pool).await?),
            database: "SQLite",
        })
    }

    /// A sink on a PostgreSQL pool of your own.
    #[cfg(feature = "postgres")]
    pub async fn from_postgres(pool: sqlx::PgPool) -> Result<Self> {
        Ok(Self {
            engine: Box::new(Engine::new(pool).await?),
            database: "PostgreSQL",
        })
    }

    #[cfg(feature = "sqlite")]
    async fn connect_sqlite(url: &str) -> Result<Self> {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        use std::str::FromStr;
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| bad_url("SQLite", e))?
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| unreachable_database("SQLite", e))?;
        Self::from_sqlite(pool).await
    }

    #[cfg(not(feature = "sqlite"))]
    async fn connect_sqlite(_url: &str) -> Result<Self> {
        Err(missing_feature("sqlite", "SQLite"))
    }

    #[cfg(feature = "postgres")]
    async fn connect_postgres(url: &str) -> Result<Self> {
        use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
        use std::str::FromStr;
        let options = PgConnectOptions::from_str(url).map_err(|e| bad_url("PostgreSQL", e))?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| unreachable_database("PostgreSQL", e))?;
        Self::from_postgres(pool).await
    }

    #[cfg(not(feature = "postgres"))]
    async fn connect_postgres(_url: &str) -> Result<Self> {
        Err(missing_feature("postgres", "PostgreSQL"))
    }
}

/// A database URL that does not parse. The URL itself is left out: it may hold a password.
fn bad_url(database: &str, error: sqlx::Error) -> Error {
    Error::config(format!(
        "the {database} URL is not valid; see the README for its form"
    ))
    .with_source(error)
}

fn unreachable_database(database: &str, error: sqlx::Error) -> Error {
    Error::new(
        ErrorKind::Sink,
        format!(
            "the {database} database cannot be reached; check the URL and that the server runs"
        ),
    )
    .with_source(error)
}

#[cfg(not(all(feature = "sqlite", feature = "postgres")))]
fn missing_feature(feature: &str, database: &str) -> Error {
    Error::config(format!(
        "this build has no {database} support; enable the `{feature}` feature of d365-connector"
    ))
}

impl fmt::Debug for SqlSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlSink")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RecordSink for SqlSink {
    async fn prepare(&self, target: &TargetSchema, identifiers: &[String]) -> Result<()> {
        self.engine.prepare(target, identifiers).await
    }

    async fn write(&self, object: &str, operations: &[Operation]) -> Result<Vec<WriteResult>> {
        self.engine.write(object, operations).await
    }

    async fn write_with_checkpoint(
        &self,
        object: &str,
        operations: &[Operation],
        checkpoint: BatchCheckpoint<'_>,
    ) -> Result<Vec<WriteResult>> {
        self.engine
            .write_with_checkpoint(object, operations, checkpoint)
            .await
    }

    async fn delete_missing(&self, object: &str, keep: &KeySet) -> Result<Option<u64>> {
        self.engine.delete_missing(object, keep).await
    }
}

#[async_trait]
impl CheckpointStore for SqlSink {
    async fn load(&self, job: &str) -> Result<Option<Checkpoint>> {
        self.engine.load(job).await
    }

    async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<()> {
        self.engine.save(job, checkpoint).await
    }
}
