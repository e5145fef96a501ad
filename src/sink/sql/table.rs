//! A target object's table: its quoted names, columns and key, the statement that creates it,
//! and the check of a table that already exists.

use crate::error::{Error, Result};
use crate::mapping::{TargetField, TargetSchema};
use std::collections::BTreeSet;

/// The table where `SqlSink` keeps checkpoints, by job name.
pub(super) const CHECKPOINT_TABLE: &str = "d365_checkpoints";
/// The name of the rows a statement binds (a common table expression).
pub(super) const INPUT: &str = "d365_input";
/// The temporary table of the keys a resync read.
pub(super) const KEEP: &str = "d365_keep";

/// `name` quoted as an SQL identifier (`"My ""Table"""`), so any name is taken literally.
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// One column: a field of the target object.
#[derive(Debug)]
pub(super) struct Column {
    /// The field's name.
    pub name: String,
    /// The name quoted.
    pub quoted: String,
    /// The field's type and length.
    pub field: TargetField,
}

/// The table of one target object.
#[derive(Debug)]
pub(super) struct Table {
    /// The object's name.
    pub name: String,
    /// The name quoted.
    pub quoted: String,
    /// One column per field of the target schema, in the schema's order.
    pub columns: Vec<Column>,
    /// The positions in `columns` of the identifiers, in the job's order.
    pub keys: Vec<usize>,
}

/// What a table that already exists holds.
#[derive(Debug, Default)]
pub(super) struct ExistingTable {
    /// Each column's name and declared type.
    pub columns: Vec<(String, String)>,
    /// The column names of each primary key and unique index.
    pub unique_keys: Vec<BTreeSet<String>>,
}

impl Table {
    /// The table of `target`, found by `identifiers`; names the database cannot keep exactly
    /// (longer than `max_name_bytes`, holding NUL, or reserved by the sink) are refused, all
    /// at once.
    pub fn plan(
        target: &TargetSchema,
        identifiers: &[String],
        max_name_bytes: usize,
    ) -> Result<Self> {
        let mut problems: Vec<String> = std::iter::once(&target.object)
            .chain(target.fields.keys())
            .filter_map(|name| name_problem(name, max_name_bytes))
            .collect();
        if [CHECKPOINT_TABLE, INPUT, KEEP]
            .iter()
            .any(|reserved| reserved.eq_ignore_ascii_case(&target.object))
        {
            problems.push(format!(
                "`{}` is a name SqlSink keeps for itself",
                target.object
            ));
        }
        let columns: Vec<Column> = target
            .fields
            .iter()
            .map(|(name, field)| Column {
                name: name.clone(),
                quoted: quote(name),
                field: *field,
            })
            .collect();
        let mut keys = Vec::new();
        for identifier in identifiers {
            match columns.iter().position(|c| &c.name == identifier) {
                Some(position) => keys.push(position),
                None => problems.push(format!(
                    "the identifier `{identifier}` is not a field of the object"
                )),
            }
        }
        if !problems.is_empty() {
            return Err(Error::config(format!(
                "the object `{}` cannot be a table: {}; rename it in the job's target",
                target.object,
                problems.join("; ")
            )));
        }
        Ok(Self {
            name: target.object.clone(),
            quoted: quote(&target.object),
            columns,
            keys,
        })
    }

    /// The identifier columns, in the job's order.
    pub fn key_columns(&self) -> impl Iterator<Item = &Column> {
        self.keys.iter().map(|&k| &self.columns[k])
    }

    /// `CREATE TABLE IF NOT EXISTS`, with `column_type` giving each column's type; the
    /// identifiers are the primary key.
    pub fn create_sql(&self, column_type: fn(&TargetField) -> String) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(position, column)| {
                let not_null = if self.keys.contains(&position) {
                    " NOT NULL"
                } else {
                    ""
                };
                format!("{} {}{not_null}", column.quoted, column_type(&column.field))
            })
            .collect();
        if !self.keys.is_empty() {
            let keys: Vec<&str> = self.key_columns().map(|c| c.quoted.as_str()).collect();
            parts.push(format!("PRIMARY KEY ({})", keys.join(", ")));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.quoted,
            parts.join(", ")
        )
    }

    /// Refuses an existing table that cannot take the job's records: a missing column, a
    /// column of another type, no unique key on the identifiers. Every problem is named.
    pub fn check(
        &self,
        existing: &ExistingTable,
        column_type: fn(&TargetField) -> String,
        accepts: fn(&TargetField, &str) -> bool,
    ) -> Result<()> {
        let mut problems = Vec::new();
        for column in &self.columns {
            let expected = column_type(&column.field);
            let kind = column.field.field_type;
            match existing
                .columns
                .iter()
                .find(|(name, _)| *name == column.name)
            {
                None => problems.push(format!(
                    "column {} is missing (the {kind} field needs {expected})",
                    column.quoted
                )),
                Some((_, declared)) if !accepts(&column.field, declared) => problems.push(format!(
                    "column {} is {declared}, but the {kind} field needs {expected}",
                    column.quoted
                )),
                Some(_) => {}
            }
        }
        let key: BTreeSet<String> = self.key_columns().map(|c| c.name.clone()).collect();
        if !key.is_empty() && !existing.unique_keys.contains(&key) {
            let names: Vec<&str> = self.key_columns().map(|c| c.quoted.as_str()).collect();
            problems.push(format!(
                "it has no primary key or unique index on exactly ({}), the identifiers records are found by",
                names.join(", ")
            ));
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::config(format!(
            "the table {} cannot take the records of `{}`: {}; change the table, or drop it so that SqlSink creates it",
            self.quoted,
            self.name,
            problems.join("; ")
        )))
    }
}

/// Why `name` cannot be a table or column name, if it cannot.
fn name_problem(name: &str, max_bytes: usize) -> Option<String> {
    if name.is_empty() {
        Some("a name is empty".to_owned())
    } else if name.contains('\0') {
        Some(format!("`{}` holds a NUL character", name.escape_debug()))
    } else if name.len() > max_bytes {
        Some(format!(
            "`{name}` is {} bytes long; the database keeps {max_bytes} at most",
            name.len()
        ))
    } else {
        None
    }
}
