//! A batch of operations planned as set-based steps: each record's values checked and turned
//! into cells, runs of the same operation grouped, identifiers repeated in a run resolved.
//!
//! Planning is pure; [`super::engine`] executes the plan.

use super::table::{Column, Table};
use crate::mapping::{TargetFieldType, TargetRecord, TargetValue};
use crate::sink::{Operation, WriteFailure, WriteResult, field_names, key_text};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

/// One value bound into a statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Cell {
    /// SQL `NULL`.
    Null,
    /// Text: strings, ids, and numbers as their digits.
    Text(String),
    /// A 64-bit integer.
    Integer(i64),
    /// A boolean.
    Boolean(bool),
    /// A calendar date.
    Date(NaiveDate),
    /// An instant in UTC.
    DateTime(DateTime<Utc>),
}

/// One row of an input relation: the operation it came from and its cells.
#[derive(Debug)]
pub(super) struct Row {
    /// The operation's position in the batch.
    pub ordinal: usize,
    /// One cell per column of the step's layout.
    pub cells: Vec<Cell>,
}

/// What a step does with its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StepKind {
    /// Insert; rows whose identifiers exist fail.
    Insert,
    /// Insert or update by identifiers.
    Upsert,
    /// Update by identifiers; rows whose identifiers do not exist fail.
    Update,
    /// Delete by identifiers.
    Delete,
}

/// One set-based step: rows of one kind, at most one per identifier key.
#[derive(Debug)]
pub(super) struct Step {
    /// What the step does.
    pub kind: StepKind,
    /// The positions in the table's columns of each row's cells: every column, or the
    /// identifiers only for deletes.
    pub layout: Vec<usize>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// A batch made ready: the steps to run in order, and the results known before running them.
#[derive(Debug)]
pub(super) struct Plan {
    /// The steps, in the order of the operations.
    pub steps: Vec<Step>,
    /// One result per operation; `None` until a step settles it.
    pub results: Vec<Option<WriteResult>>,
    /// `(earlier, later)`: an operation overtaken by a later one on the same identifiers in the
    /// same step, which gets the later one's result.
    pub overtaken: Vec<(usize, usize)>,
}

/// Plans `operations` for `table`. A record whose values the table cannot take fails alone.
pub(super) fn plan(table: &Table, operations: &[Operation], text_holds_nul: bool) -> Plan {
    let mut plan = Plan {
        steps: Vec::new(),
        results: vec![None; operations.len()],
        overtaken: Vec::new(),
    };
    for (ordinal, operation) in operations.iter().enumerate() {
        let (kind, record) = match operation {
            Operation::Insert { record } => (StepKind::Insert, record),
            Operation::Upsert { record, .. } => (StepKind::Upsert, record),
            Operation::Update { record, .. } => (StepKind::Update, record),
            Operation::Delete { key } => (StepKind::Delete, key),
        };
        if plan.steps.last().is_none_or(|step| step.kind != kind) {
            let layout = match kind {
                StepKind::Delete => table.keys.clone(),
                _ => (0..table.columns.len()).collect(),
            };
            plan.steps.push(Step {
                kind,
                layout,
                rows: Vec::new(),
            });
        }
        let step = plan.steps.last_mut().expect("a step was just pushed");
        match cells(table, &step.layout, record, text_holds_nul) {
            Ok(cells) => step.rows.push(Row { ordinal, cells }),
            Err(failure) => plan.results[ordinal] = Some(Err(failure)),
        }
    }
    for step in &mut plan.steps {
        resolve_repeated_keys(
            table,
            step,
            operations,
            &mut plan.results,
            &mut plan.overtaken,
        );
    }
    plan
}

/// Leaves one row per identifier key in `step`: in an insert the first stays and the others
/// fail (the first one wrote the key); otherwise the last stays and overtakes the others.
fn resolve_repeated_keys(
    table: &Table,
    step: &mut Step,
    operations: &[Operation],
    results: &mut [Option<WriteResult>],
    overtaken: &mut Vec<(usize, usize)>,
) {
    if table.keys.is_empty() {
        return;
    }
    let key_positions: Vec<usize> = table
        .keys
        .iter()
        .map(|k| {
            step.layout
                .iter()
                .position(|c| c == k)
                .expect("keys are in every layout")
        })
        .collect();
    let mut kept: HashMap<Vec<Cell>, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(step.rows.len());
    for row in step.rows.drain(..) {
        let key: Vec<Cell> = key_positions
            .iter()
            .map(|&p| row.cells[p].clone())
            .collect();
        match kept.get(&key) {
            None => {
                kept.insert(key, rows.len());
                rows.push(row);
            }
            Some(_) if step.kind == StepKind::Insert => {
                results[row.ordinal] = Some(Err(already_exists(table, &operations[row.ordinal])));
            }
            Some(&at) => {
                overtaken.push((rows[at].ordinal, row.ordinal));
                rows[at] = row;
            }
        }
    }
    step.rows = rows;
}

/// Rows of identifiers only, one per key of `keys` (keys the table cannot hold are left out:
/// no record has them).
pub(super) fn key_rows<'k>(
    table: &Table,
    keys: impl Iterator<Item = &'k TargetRecord>,
    text_holds_nul: bool,
) -> Vec<Row> {
    keys.enumerate()
        .filter_map(|(ordinal, key)| {
            let cells = cells(table, &table.keys, key, text_holds_nul).ok()?;
            Some(Row { ordinal, cells })
        })
        .collect()
}

/// The failure of an insert whose identifiers are taken.
pub(super) fn already_exists(table: &Table, operation: &Operation) -> WriteFailure {
    let key = identifiers(table, operation);
    WriteFailure::new(format!(
        "a {} record with the identifiers {} already exists; insert mode never overwrites, so use upsert to update existing records",
        table.name,
        key_text(&key)
    ))
    .with_field(field_names(&key))
}

/// The failure of an update whose identifiers are not found.
pub(super) fn not_found(table: &Table, operation: &Operation) -> WriteFailure {
    let key = identifiers(table, operation);
    WriteFailure::new(format!(
        "no {} record has the identifiers {}; use upsert to create missing records",
        table.name,
        key_text(&key)
    ))
    .with_field(field_names(&key))
}

/// The identifier fields of an operation's record.
fn identifiers(table: &Table, operation: &Operation) -> TargetRecord {
    let record = match operation {
        Operation::Insert { record }
        | Operation::Upsert { record, .. }
        | Operation::Update { record, .. } => record,
        Operation::Delete { key } => key,
    };
    let mut key = TargetRecord::new();
    for column in table.key_columns() {
        let value = record
            .get(&column.name)
            .cloned()
            .unwrap_or(TargetValue::Null);
        key.insert(column.name.clone(), value);
    }
    key
}

/// The cells of `record` for the columns at `layout`, or why the table cannot take it.
fn cells(
    table: &Table,
    layout: &[usize],
    record: &TargetRecord,
    text_holds_nul: bool,
) -> Result<Vec<Cell>, WriteFailure> {
    if let Some((field, _)) = record
        .iter()
        .find(|(field, _)| !table.columns.iter().any(|c| c.name == *field))
    {
        return Err(WriteFailure::new(format!(
            "the field `{field}` is not a column of the table {}; add it to the job's target fields",
            table.quoted
        ))
        .with_field(field));
    }
    layout
        .iter()
        .map(|&position| {
            let column = &table.columns[position];
            let value = record.get(&column.name).unwrap_or(&TargetValue::Null);
            if value.is_null() && table.keys.contains(&position) {
                return Err(WriteFailure::new(format!(
                    "the identifier `{}` is empty; a record is written only with every identifier",
                    column.name
                ))
                .with_field(&column.name));
            }
            cell(column, value, text_holds_nul)
                .map_err(|reason| WriteFailure::new(reason).with_field(&column.name))
        })
        .collect()
}

/// The cell of one value for `column`, or why the column cannot hold it.
fn cell(column: &Column, value: &TargetValue, text_holds_nul: bool) -> Result<Cell, String> {
    let field_type = column.field.field_type;
    let cell = match (field_type, value) {
        (_, TargetValue::Null) => Cell::Null,
        (
            TargetFieldType::String | TargetFieldType::Id,
            TargetValue::String(text) | TargetValue::Id(text),
        ) => {
            if !text_holds_nul && text.contains('\0') {
                return Err(format!(
                    "`{}` holds a NUL character, which the database cannot store in text",
                    column.name
                ));
            }
            Cell::Text(text.clone())
        }
        (TargetFieldType::Integer, TargetValue::Number(number)) => {
            Cell::Integer(number.as_i64().ok_or_else(|| {
                format!(
                    "`{}` is {number}, not a whole number in the 64-bit range",
                    column.name
                )
            })?)
        }
        (TargetFieldType::Number, TargetValue::Number(number)) => {
            Cell::Text(number.as_str().to_owned())
        }
        (TargetFieldType::Boolean, TargetValue::Bool(value)) => Cell::Boolean(*value),
        (TargetFieldType::Date, TargetValue::Date(date)) => Cell::Date(*date),
        (TargetFieldType::DateTime, TargetValue::DateTime(instant)) => Cell::DateTime(*instant),
        (_, other) => {
            return Err(format!(
                "the {field_type} field `{}` cannot hold {}",
                column.name,
                serde_json::to_string(other).unwrap_or_default()
            ));
        }
    };
    Ok(cell)
}
