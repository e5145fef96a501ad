//! The statements `SqlSink` runs, shared by every database. Names are quoted identifiers,
//! values are bound parameters; rows come in as one input relation per statement:
//!
//! ```sql
//! WITH d365_input(o, c1, c2) AS (<rows>) INSERT INTO "Company" ("Id", "Name") SELECT c1, c2 FROM d365_input
//! ```
//!
//! where `<rows>` is `VALUES (?, ?, ?), ...` on SQLite and `SELECT * FROM UNNEST($1, $2, $3)`
//! on PostgreSQL.

use super::backend::Backend;
use super::batch::{Cell, Row};
use super::table::{CHECKPOINT_TABLE, INPUT, KEEP, Table};
use crate::mapping::TargetFieldType;
use sqlx::error::BoxDynError;
use sqlx::{Arguments, Database, Encode, Type};

/// SQL text and the values bound into it, built together (as `sqlx::QueryBuilder` does, but
/// taken apart with [`Statement::into_parts`] so that code generic over the database can run
/// it).
pub(super) struct Statement<'a, B: Database> {
    sql: String,
    arguments: B::Arguments<'a>,
    /// The first value that could not be bound.
    error: Option<BoxDynError>,
}

impl<'a, B: Database> Statement<'a, B> {
    /// A statement starting with `sql`.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            arguments: B::Arguments::default(),
            error: None,
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, sql: impl AsRef<str>) -> &mut Self {
        self.sql.push_str(sql.as_ref());
        self
    }

    /// Binds `value` and appends its placeholder (`?` or `$n`).
    pub fn bind<T: 'a + Encode<'a, B> + Type<B>>(&mut self, value: T) -> &mut Self {
        let bound = self.arguments.add(value).and_then(|()| {
            self.arguments
                .format_placeholder(&mut self.sql)
                .map_err(Into::into)
        });
        if let Err(error) = bound {
            self.error.get_or_insert(error);
        }
        self
    }

    /// The SQL text and its arguments, or the error of a value that could not be bound.
    pub fn into_parts(self) -> Result<(String, B::Arguments<'a>), sqlx::Error> {
        match self.error {
            Some(error) => Err(sqlx::Error::Encode(error)),
            None => Ok((self.sql, self.arguments)),
        }
    }
}

/// `WITH d365_input(o, c1, ...) AS (<rows>) `: the rows, whose cells have the types `types`.
fn with_input<'a, B: Backend>(types: &[TargetFieldType], rows: &'a [Row]) -> Statement<'a, B> {
    let names: Vec<String> = (1..=types.len()).map(|p| format!("c{p}")).collect();
    let mut query = Statement::new(format!("WITH {INPUT}(o, {}) AS (", names.join(", ")));
    B::push_rows(&mut query, types, rows);
    query.push(") ");
    query
}

/// [`with_input`] for rows holding the columns of `table` at `layout`.
fn with_table_input<'a, B: Backend>(
    table: &Table,
    layout: &[usize],
    rows: &'a [Row],
) -> Statement<'a, B> {
    let types: Vec<TargetFieldType> = layout
        .iter()
        .map(|&c| table.columns[c].field.field_type)
        .collect();
    with_input(&types, rows)
}

/// `t."K1" = i.c1 AND ...`: the table's identifiers equal the input's, for a `layout`.
fn keys_match(table: &Table, layout: &[usize], input: &str) -> String {
    table
        .keys
        .iter()
        .map(|k| {
            let position = layout
                .iter()
                .position(|c| c == k)
                .expect("keys are in every layout")
                + 1;
            format!("t.{} = {input}.c{position}", table.columns[*k].quoted)
        })
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// Inserts every row (all columns); with `upsert`, a row whose identifiers exist updates it.
pub(super) fn insert<'a, B: Backend>(
    table: &Table,
    rows: &'a [Row],
    upsert: bool,
) -> Statement<'a, B> {
    let layout: Vec<usize> = (0..table.columns.len()).collect();
    let mut query = with_table_input(table, &layout, rows);
    let columns: Vec<&str> = table.columns.iter().map(|c| c.quoted.as_str()).collect();
    let values: Vec<String> = (1..=layout.len()).map(|p| format!("c{p}")).collect();
    query.push(format!(
        "INSERT INTO {} ({}) SELECT {} FROM {INPUT}",
        table.quoted,
        columns.join(", "),
        values.join(", ")
    ));
    if upsert {
        let keys: Vec<&str> = table.key_columns().map(|c| c.quoted.as_str()).collect();
        let updates: Vec<String> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(position, _)| !table.keys.contains(position))
            .map(|(_, c)| format!("{0} = excluded.{0}", c.quoted))
            .collect();
        // `WHERE true` tells SQLite's parser the ON CONFLICT belongs to the INSERT.
        query.push(format!(" WHERE true ON CONFLICT ({}) DO ", keys.join(", ")));
        query.push(if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        });
    }
    query
}

/// Selects the ordinals of the rows (with the columns at `layout`) whose identifiers exist in
/// the table.
pub(super) fn existing<'a, B: Backend>(
    table: &Table,
    layout: &[usize],
    rows: &'a [Row],
) -> Statement<'a, B> {
    let mut query = with_table_input(table, layout, rows);
    query.push(format!(
        "SELECT o FROM {INPUT} WHERE EXISTS (SELECT 1 FROM {} AS t WHERE {})",
        table.quoted,
        keys_match(table, layout, INPUT)
    ));
    query
}

/// Updates the records whose identifiers equal a row's (all columns) with the row's values.
pub(super) fn update<'a, B: Backend>(table: &Table, rows: &'a [Row]) -> Statement<'a, B> {
    let layout: Vec<usize> = (0..table.columns.len()).collect();
    let mut query = with_table_input(table, &layout, rows);
    let sets: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .filter(|(position, _)| !table.keys.contains(position))
        .map(|(position, c)| format!("{} = {INPUT}.c{}", c.quoted, position + 1))
        .collect();
    // A table of identifiers only has nothing to update; setting a key to itself is harmless.
    let sets = if sets.is_empty() {
        let first = &table.columns[table.keys[0]];
        format!("{} = t.{}", first.quoted, first.quoted)
    } else {
        sets.join(", ")
    };
    query.push(format!(
        "UPDATE {} AS t SET {sets} FROM {INPUT} WHERE {}",
        table.quoted,
        keys_match(table, &layout, INPUT)
    ));
    query
}

/// Deletes the records whose identifiers equal a row's (identifiers only).
pub(super) fn delete<'a, B: Backend>(table: &Table, rows: &'a [Row]) -> Statement<'a, B> {
    let mut query = with_table_input(table, &table.keys, rows);
    query.push(format!(
        "DELETE FROM {} AS t WHERE EXISTS (SELECT 1 FROM {INPUT} WHERE {})",
        table.quoted,
        keys_match(table, &table.keys, INPUT)
    ));
    query
}

/// Creates the temporary table of the keys to keep, typed like the identifiers.
pub(super) fn create_keep<B: Backend>(table: &Table) -> String {
    let columns: Vec<String> = table
        .key_columns()
        .enumerate()
        .map(|(p, c)| format!("c{} {}", p + 1, B::column_type(&c.field)))
        .collect();
    format!("CREATE TEMPORARY TABLE {KEEP} ({})", columns.join(", "))
}

/// Adds rows (identifiers only) to the keys to keep.
pub(super) fn fill_keep<'a, B: Backend>(table: &Table, rows: &'a [Row]) -> Statement<'a, B> {
    let mut query = with_table_input(table, &table.keys, rows);
    let columns: Vec<String> = (1..=table.keys.len()).map(|p| format!("c{p}")).collect();
    query.push(format!(
        "INSERT INTO {KEEP} SELECT {} FROM {INPUT}",
        columns.join(", ")
    ));
    query
}

/// Deletes the records whose identifiers are not among the keys to keep.
pub(super) fn delete_unkept(table: &Table) -> String {
    format!(
        "DELETE FROM {} AS t WHERE NOT EXISTS (SELECT 1 FROM {KEEP} WHERE {})",
        table.quoted,
        keys_match(table, &table.keys, KEEP)
    )
}

/// Drops the temporary table of keys to keep.
pub(super) fn drop_keep() -> String {
    format!("DROP TABLE {KEEP}")
}

/// Creates the checkpoint table when it is missing.
pub(super) fn create_checkpoints() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (job TEXT NOT NULL PRIMARY KEY, checkpoint TEXT NOT NULL)"
    )
}

/// The row `(job, checkpoint)` or `(job)` of the checkpoint statements: bound through the input
/// relation like every other value.
pub(super) fn checkpoint_row(texts: impl IntoIterator<Item = String>) -> Vec<Row> {
    vec![Row {
        ordinal: 0,
        cells: texts.into_iter().map(Cell::Text).collect(),
    }]
}

/// Selects the checkpoint saved for the job in `row` (from [`checkpoint_row`]).
pub(super) fn load_checkpoint<'a, B: Backend>(row: &'a [Row]) -> Statement<'a, B> {
    let mut query = with_input(&[TargetFieldType::String], row);
    query.push(format!(
        "SELECT checkpoint FROM {CHECKPOINT_TABLE} JOIN {INPUT} ON job = c1"
    ));
    query
}

/// Saves the `(job, checkpoint)` in `row` (from [`checkpoint_row`]), replacing the one saved
/// before.
pub(super) fn save_checkpoint<'a, B: Backend>(row: &'a [Row]) -> Statement<'a, B> {
    let mut query = with_input(&[TargetFieldType::String; 2], row);
    query.push(format!(
        "INSERT INTO {CHECKPOINT_TABLE} (job, checkpoint) SELECT c1, c2 FROM {INPUT} WHERE true ON CONFLICT (job) DO UPDATE SET checkpoint = excluded.checkpoint"
    ));
    query
}
