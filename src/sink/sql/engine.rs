//! The SQL sink for one database: prepares tables, runs each batch's plan and its checkpoint in
//! one transaction, removes what a resync did not read, keeps checkpoints.

use super::backend::Backend;
use super::batch::{self, Plan, Step, StepKind};
use super::statement::{self, Statement};
use super::table::{ExistingTable, Table};
use crate::checkpoint_store::CheckpointStore;
use crate::error::{Error, ErrorKind, Result};
use crate::mapping::TargetSchema;
use crate::sink::{BatchCheckpoint, KeySet, Operation, RecordSink, WriteFailure, WriteResult};
use crate::source::Checkpoint;
use async_trait::async_trait;
use sqlx::{Executor, FromRow, IntoArguments, Pool};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

/// A [`RecordSink`] and [`CheckpointStore`] on a pool of database `B`.
pub(super) struct Engine<B: Backend> {
    pool: Pool<B>,
    /// The tables prepared so far, by object name.
    tables: Mutex<HashMap<String, Arc<Table>>>,
}

impl<B: Backend> fmt::Debug for Engine<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("database", &B::LABEL)
            .finish_non_exhaustive()
    }
}

/// An error of the database, saying what it was doing.
fn database_error<B: Backend>(doing: String, error: sqlx::Error) -> Error {
    Error::new(
        ErrorKind::Sink,
        format!("the {} database {doing}", B::LABEL),
    )
    .with_source(error)
}

impl<B: Backend> Engine<B>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
    for<'r> (i64,): FromRow<'r, B::Row>,
    for<'r> (String,): FromRow<'r, B::Row>,
    for<'r> (String, String): FromRow<'r, B::Row>,
{
    /// An engine on `pool`, with its checkpoint table created.
    pub async fn new(pool: Pool<B>) -> Result<Self> {
        let mut connection = pool
            .acquire()
            .await
            .map_err(|e| database_error::<B>("cannot be reached".to_owned(), e))?;
        connection
            .execute(statement::create_checkpoints().as_str())
            .await
            .map_err(|e| database_error::<B>("cannot create the checkpoint table".to_owned(), e))?;
        drop(connection);
        Ok(Self {
            pool,
            tables: Mutex::new(HashMap::new()),
        })
    }

    /// The table prepared for `object`.
    fn table(&self, object: &str) -> Result<Arc<Table>> {
        let tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        tables.get(object).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::Sink,
                format!(
                    "SqlSink has no table for `{object}` yet: a SyncJob prepares it when it runs; outside a job, call RecordSink::prepare first"
                ),
            )
        })
    }

    /// Creates the table when it is missing, then checks it can take the records.
    async fn create_and_check(&self, table: &Table) -> Result<()> {
        let failed = |e| {
            database_error::<B>(
                format!("cannot create or read the table {}", table.quoted),
                e,
            )
        };
        let mut connection = self.pool.acquire().await.map_err(failed)?;
        connection
            .execute(table.create_sql(B::column_type).as_str())
            .await
            .map_err(failed)?;
        let mut query = Statement::new("");
        B::push_columns_query(&mut query, table);
        let (sql, arguments) = query.into_parts().map_err(failed)?;
        let columns = fetch_pairs(&mut connection, &sql, arguments)
            .await
            .map_err(failed)?;
        let mut query = Statement::new("");
        B::push_unique_keys_query(&mut query, table);
        let (sql, arguments) = query.into_parts().map_err(failed)?;
        let index_columns = fetch_pairs(&mut connection, &sql, arguments)
            .await
            .map_err(failed)?;
        let mut unique_keys: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (index, column) in index_columns {
            unique_keys.entry(index).or_default().insert(column);
        }
        let existing = ExistingTable {
            columns,
            unique_keys: unique_keys.into_values().collect(),
        };
        table.check(&existing, B::column_type, B::accepts)
    }

    /// Runs the plan of `operations` and saves `checkpoint` in one transaction.
    async fn commit_batch(
        &self,
        object: &str,
        operations: &[Operation],
        checkpoint: Option<BatchCheckpoint<'_>>,
    ) -> Result<Vec<WriteResult>> {
        let table = self.table(object)?;
        let Plan {
            steps,
            mut results,
            overtaken,
        } = batch::plan(&table, operations, B::TEXT_HOLDS_NUL);
        let failed = |e| {
            database_error::<B>(
                format!(
                    "refused a batch for {}; nothing of the batch was written",
                    table.quoted
                ),
                e,
            )
        };
        let mut transaction = self.pool.begin_with(B::BEGIN).await.map_err(failed)?;
        for step in steps {
            run_step(&mut transaction, &table, step, operations, &mut results)
                .await
                .map_err(failed)?;
        }
        if let Some(BatchCheckpoint {
            job,
            checkpoint: Some(checkpoint),
        }) = checkpoint
        {
            save_checkpoint(&mut transaction, job, checkpoint).await?;
        }
        transaction.commit().await.map_err(failed)?;
        for (earlier, later) in overtaken {
            results[earlier] = results[later].clone();
        }
        Ok(results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| Err(WriteFailure::new("the record was not written")))
            })
            .collect())
    }

    /// Deletes the records of `table` whose identifiers are not in `keep`; returns how many.
    async fn delete_unkept(
        &self,
        table: &Table,
        keep: &KeySet,
    ) -> std::result::Result<u64, sqlx::Error> {
        let rows = batch::key_rows(table, keep.iter(), B::TEXT_HOLDS_NUL);
        let mut transaction = self.pool.begin_with(B::BEGIN).await?;
        transaction
            .execute(statement::create_keep::<B>(table).as_str())
            .await?;
        for chunk in rows.chunks(B::max_rows(table.keys.len() + 1)) {
            let (sql, arguments) = statement::fill_keep::<B>(table, chunk).into_parts()?;
            execute(&mut transaction, &sql, arguments).await?;
        }
        let deleted = transaction
            .execute(statement::delete_unkept(table).as_str())
            .await?;
        transaction.execute(statement::drop_keep().as_str()).await?;
        transaction.commit().await?;
        Ok(B::rows_affected(&deleted))
    }
}

/// Runs one step of a batch, settling the results of its rows.
async fn run_step<B: Backend>(
    connection: &mut B::Connection,
    table: &Table,
    mut step: Step,
    operations: &[Operation],
    results: &mut [Option<WriteResult>],
) -> std::result::Result<(), sqlx::Error>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
    for<'r> (i64,): FromRow<'r, B::Row>,
{
    let chunk_rows = B::max_rows(step.layout.len() + 1);
    if matches!(step.kind, StepKind::Insert | StepKind::Update) && !table.keys.is_empty() {
        let mut found = HashSet::new();
        for chunk in step.rows.chunks(chunk_rows) {
            let (sql, arguments) =
                statement::existing::<B>(table, &step.layout, chunk).into_parts()?;
            found.extend(fetch_ordinals(connection, &sql, arguments).await?);
        }
        step.rows.retain(|row| {
            let exists = found.contains(&row.ordinal);
            let failure = match step.kind {
                StepKind::Insert if exists => {
                    Some(batch::already_exists(table, &operations[row.ordinal]))
                }
                StepKind::Update if !exists => {
                    Some(batch::not_found(table, &operations[row.ordinal]))
                }
                _ => None,
            };
            if let Some(failure) = &failure {
                results[row.ordinal] = Some(Err(failure.clone()));
            }
            failure.is_none()
        });
    }
    for chunk in step.rows.chunks(chunk_rows) {
        let query: Statement<'_, B> = match step.kind {
            StepKind::Insert => statement::insert(table, chunk, false),
            StepKind::Upsert => statement::insert(table, chunk, true),
            StepKind::Update => statement::update(table, chunk),
            StepKind::Delete => statement::delete(table, chunk),
        };
        let (sql, arguments) = query.into_parts()?;
        execute(connection, &sql, arguments).await?;
    }
    for row in &step.rows {
        results[row.ordinal] = Some(Ok(()));
    }
    Ok(())
}

/// Runs a statement (the parts of a [`Statement`]); returns how many rows it changed.
async fn execute<'q, B: Backend>(
    connection: &mut B::Connection,
    sql: &'q str,
    arguments: B::Arguments<'q>,
) -> std::result::Result<u64, sqlx::Error>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
{
    let result = sqlx::query_with(sql, arguments).execute(connection).await?;
    Ok(B::rows_affected(&result))
}

/// Runs a query answering row ordinals.
async fn fetch_ordinals<'q, B: Backend>(
    connection: &mut B::Connection,
    sql: &'q str,
    arguments: B::Arguments<'q>,
) -> std::result::Result<Vec<usize>, sqlx::Error>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
    for<'r> (i64,): FromRow<'r, B::Row>,
{
    let ordinals: Vec<i64> = sqlx::query_scalar_with(sql, arguments)
        .fetch_all(connection)
        .await?;
    Ok(ordinals.into_iter().map(|o| o as usize).collect())
}

/// Runs a query answering pairs of text.
async fn fetch_pairs<'q, B: Backend>(
    connection: &mut B::Connection,
    sql: &'q str,
    arguments: B::Arguments<'q>,
) -> std::result::Result<Vec<(String, String)>, sqlx::Error>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
    for<'r> (String, String): FromRow<'r, B::Row>,
{
    sqlx::query_as_with(sql, arguments)
        .fetch_all(connection)
        .await
}

/// Saves `checkpoint` for `job` on `connection`.
async fn save_checkpoint<B: Backend>(
    connection: &mut B::Connection,
    job: &str,
    checkpoint: &Checkpoint,
) -> Result<()>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
{
    let json = serde_json::to_string(checkpoint).map_err(|e| {
        Error::new(
            ErrorKind::Sink,
            "the checkpoint could not be written as JSON",
        )
        .with_source(e)
    })?;
    let failed = |e| database_error::<B>(format!("cannot save the checkpoint of job `{job}`"), e);
    let row = statement::checkpoint_row([job.to_owned(), json]);
    let (sql, arguments) = statement::save_checkpoint::<B>(&row)
        .into_parts()
        .map_err(failed)?;
    execute(connection, &sql, arguments).await.map_err(failed)?;
    Ok(())
}

#[async_trait]
impl<B: Backend> RecordSink for Engine<B>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
    for<'r> (i64,): FromRow<'r, B::Row>,
    for<'r> (String,): FromRow<'r, B::Row>,
    for<'r> (String, String): FromRow<'r, B::Row>,
{
    async fn prepare(&self, target: &TargetSchema, identifiers: &[String]) -> Result<()> {
        let table = Table::plan(target, identifiers, B::MAX_NAME_BYTES)?;
        self.create_and_check(&table).await?;
        let mut tables = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        tables.insert(table.name.clone(), Arc::new(table));
        Ok(())
    }

    async fn write(&self, object: &str, operations: &[Operation]) -> Result<Vec<WriteResult>> {
        self.commit_batch(object, operations, None).await
    }

    async fn write_with_checkpoint(
        &self,
        object: &str,
        operations: &[Operation],
        checkpoint: BatchCheckpoint<'_>,
    ) -> Result<Vec<WriteResult>> {
        self.commit_batch(object, operations, Some(checkpoint))
            .await
    }

    async fn delete_missing(&self, object: &str, keep: &KeySet) -> Result<Option<u64>> {
        let table = self.table(object)?;
        if table.keys.is_empty() {
            return Ok(None);
        }
        let deleted = self.delete_unkept(&table, keep).await.map_err(|e| {
            database_error::<B>(
                format!("cannot remove the deleted records of {}", table.quoted),
                e,
            )
        })?;
        Ok(Some(deleted))
    }
}

#[async_trait]
impl<B: Backend> CheckpointStore for Engine<B>
where
    for<'c> &'c mut B::Connection: Executor<'c, Database = B>,
    for<'a> B::Arguments<'a>: IntoArguments<'a, B>,
    for<'r> (i64,): FromRow<'r, B::Row>,
    for<'r> (String,): FromRow<'r, B::Row>,
    for<'r> (String, String): FromRow<'r, B::Row>,
{
    async fn load(&self, job: &str) -> Result<Option<Checkpoint>> {
        let failed =
            |e| database_error::<B>(format!("cannot read the checkpoint of job `{job}`"), e);
        let row = statement::checkpoint_row([job.to_owned()]);
        let mut connection = self.pool.acquire().await.map_err(failed)?;
        let (sql, arguments) = statement::load_checkpoint::<B>(&row)
            .into_parts()
            .map_err(failed)?;
        let json: Option<String> = sqlx::query_scalar_with(&sql, arguments)
            .fetch_optional(&mut *connection)
            .await
            .map_err(failed)?;
        json.map(|json| {
            serde_json::from_str(&json).map_err(|e| {
                Error::config(format!(
                    "the checkpoint saved for job `{job}` is not a checkpoint ({e}); delete its row from {} to start the job from the beginning",
                    super::table::CHECKPOINT_TABLE
                ))
            })
        })
        .transpose()
    }

    async fn save(&self, job: &str, checkpoint: &Checkpoint) -> Result<()> {
        let mut connection = self.pool.acquire().await.map_err(|e| {
            database_error::<B>(format!("cannot save the checkpoint of job `{job}`"), e)
        })?;
        save_checkpoint(&mut connection, job, checkpoint).await
    }
}
