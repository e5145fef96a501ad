//! What differs between the databases: column types, how rows are bound, how a table is read.

use super::batch::Row;
use super::statement::Statement;
use super::table::Table;
use crate::mapping::{TargetField, TargetFieldType};
use sqlx::Database;

/// One database `SqlSink` writes to. Everything else (statements, batches, checks) is shared.
pub(super) trait Backend: Database {
    /// The database's name in messages.
    const LABEL: &'static str;
    /// The statement that opens a batch's transaction.
    const BEGIN: &'static str;
    /// The longest table or column name, in bytes, the database keeps without cutting it.
    const MAX_NAME_BYTES: usize;
    /// Whether text values may hold the NUL character.
    const TEXT_HOLDS_NUL: bool;

    /// The most rows of `columns` values one statement may bind.
    fn max_rows(columns: usize) -> usize;

    /// The column type created for `field`.
    fn column_type(field: &TargetField) -> String;

    /// Whether a column declared `declared` holds every value of `field` exactly.
    fn accepts(field: &TargetField, declared: &str) -> bool;

    /// Pushes the rows of an input relation (`VALUES ...` or `SELECT * FROM UNNEST(...)`): an
    /// ordinal, then one value per type of `types`.
    fn push_rows<'a>(query: &mut Statement<'a, Self>, types: &[TargetFieldType], rows: &'a [Row]);

    /// Pushes a query answering `(column name, declared type)` for each column of `table`
    /// (no rows when the table does not exist).
    fn push_columns_query<'a>(query: &mut Statement<'a, Self>, table: &'a Table);

    /// Pushes a query answering `(index name, column name)` for each column of each primary key
    /// or unique index of `table` (partial indexes left out).
    fn push_unique_keys_query<'a>(query: &mut Statement<'a, Self>, table: &'a Table);

    /// How many rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}
