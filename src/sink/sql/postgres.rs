//! PostgreSQL: rows as one array per column (`UNNEST`), exact `numeric` and `timestamptz`.

use super::backend::Backend;
use super::batch::{Cell, Row};
use super::statement::Statement;
use super::table::Table;
use crate::mapping::{TargetField, TargetFieldType};
use sqlx::Postgres;

/// One column of the rows as an array: the value of each row, `None` for SQL `NULL`.
fn column<'a, T>(
    rows: &'a [Row],
    position: usize,
    value: impl Fn(&'a Cell) -> Option<T>,
) -> Vec<Option<T>> {
    rows.iter().map(|row| value(&row.cells[position])).collect()
}

fn text(cell: &Cell) -> Option<&str> {
    match cell {
        Cell::Text(text) => Some(text),
        _ => None,
    }
}

impl Backend for Postgres {
    const LABEL: &'static str = "PostgreSQL";
    const BEGIN: &'static str = "BEGIN";
    // NAMEDATALEN - 1: a longer name is silently cut, so two fields could meet in one column.
    const MAX_NAME_BYTES: usize = 63;
    const TEXT_HOLDS_NUL: bool = false;

    fn max_rows(_columns: usize) -> usize {
        // One array parameter per column, whatever the number of rows.
        usize::MAX
    }

    fn column_type(field: &TargetField) -> String {
        match (field.field_type, field.max_length) {
            (TargetFieldType::Id | TargetFieldType::String, Some(length)) => {
                format!("varchar({length})")
            }
            (TargetFieldType::Id | TargetFieldType::String, None) => "text".to_owned(),
            (TargetFieldType::Integer, _) => "bigint".to_owned(),
            (TargetFieldType::Number, _) => "numeric".to_owned(),
            (TargetFieldType::Boolean, _) => "boolean".to_owned(),
            (TargetFieldType::Date, _) => "date".to_owned(),
            (TargetFieldType::DateTime, _) => "timestamptz".to_owned(),
        }
    }

    fn accepts(field: &TargetField, declared: &str) -> bool {
        match field.field_type {
            TargetFieldType::Id | TargetFieldType::String => {
                let limit = declared
                    .strip_prefix("character varying(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .and_then(|n| n.parse::<usize>().ok());
                match limit {
                    Some(limit) => field.max_length.is_some_and(|length| length <= limit),
                    None => declared == "text" || declared == "character varying",
                }
            }
            TargetFieldType::Integer => declared == "bigint",
            // `numeric(p,s)` would round: only the unconstrained type keeps every digit.
            TargetFieldType::Number => declared == "numeric",
            TargetFieldType::Boolean => declared == "boolean",
            TargetFieldType::Date => declared == "date",
            TargetFieldType::DateTime => declared == "timestamp with time zone",
        }
    }

    fn push_rows<'a>(query: &mut Statement<'a, Self>, types: &[TargetFieldType], rows: &'a [Row]) {
        let ordinals: Vec<i64> = rows.iter().map(|row| row.ordinal as i64).collect();
        query.push("SELECT * FROM UNNEST(");
        query.bind(ordinals);
        query.push("::int8[]");
        for (position, field_type) in types.iter().enumerate() {
            query.push(", ");
            let cast = match field_type {
                TargetFieldType::Id | TargetFieldType::String => {
                    query.bind(column(rows, position, text));
                    "text"
                }
                TargetFieldType::Number => {
                    // Bound as text, cast by the server: every digit arrives.
                    query.bind(column(rows, position, text));
                    "numeric"
                }
                TargetFieldType::Integer => {
                    query.bind(column(rows, position, |cell| match cell {
                        Cell::Integer(number) => Some(*number),
                        _ => None,
                    }));
                    "int8"
                }
                TargetFieldType::Boolean => {
                    query.bind(column(rows, position, |cell| match cell {
                        Cell::Boolean(value) => Some(*value),
                        _ => None,
                    }));
                    "bool"
                }
                TargetFieldType::Date => {
                    query.bind(column(rows, position, |cell| match cell {
                        Cell::Date(date) => Some(*date),
                        _ => None,
                    }));
                    "date"
                }
                TargetFieldType::DateTime => {
                    query.bind(column(rows, position, |cell| match cell {
                        Cell::DateTime(instant) => Some(*instant),
                        _ => None,
                    }));
                    "timestamptz"
                }
            };
            query.push(format!("::{cast}[]"));
        }
        query.push(")");
    }

    fn push_columns_query<'a>(query: &mut Statement<'a, Self>, table: &'a Table) {
        query.push(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(",
        );
        query.bind(table.quoted.as_str());
        query.push(") AND attnum > 0 AND NOT attisdropped");
    }

    fn push_unique_keys_query<'a>(query: &mut Statement<'a, Self>, table: &'a Table) {
        query.push(
            "SELECT i.indexrelid::regclass::text, a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(",
        );
        query.bind(table.quoted.as_str());
        query.push(") AND i.indisunique AND i.indpred IS NULL");
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}
