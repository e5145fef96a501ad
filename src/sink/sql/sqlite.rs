//! SQLite: rows as one `VALUES` list of bound parameters, types by column affinity.

use super::backend::Backend;
use super::batch::{Cell, Row};
use super::statement::Statement;
use super::table::Table;
use crate::mapping::{TargetField, TargetFieldType};
use chrono::SecondsFormat;
use sqlx::Sqlite;

/// The most bind parameters one SQLite statement takes (`SQLITE_MAX_VARIABLE_NUMBER`).
const MAX_PARAMETERS: usize = 32_766;

/// How a column stores values, from its declared type (SQLite's rules, section 3.1 of
/// "Datatypes In SQLite").
#[derive(Debug, PartialEq, Eq)]
enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

fn affinity(declared: &str) -> Affinity {
    let declared = declared.to_ascii_uppercase();
    let has = |part: &str| declared.contains(part);
    if has("INT") {
        Affinity::Integer
    } else if has("CHAR") || has("CLOB") || has("TEXT") {
        Affinity::Text
    } else if has("BLOB") || declared.is_empty() {
        Affinity::Blob
    } else if has("REAL") || has("FLOA") || has("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

impl Backend for Sqlite {
    const LABEL: &'static str = "SQLite";
    // Take the write lock up front: a batch reads (existing identifiers) before it writes.
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const MAX_NAME_BYTES: usize = usize::MAX;
    const TEXT_HOLDS_NUL: bool = true;

    fn max_rows(columns: usize) -> usize {
        MAX_PARAMETERS / columns
    }

    fn column_type(field: &TargetField) -> String {
        match (field.field_type, field.max_length) {
            (TargetFieldType::Id | TargetFieldType::String, Some(length)) => {
                format!("VARCHAR({length})")
            }
            (TargetFieldType::Integer, _) => "INTEGER".to_owned(),
            (TargetFieldType::Boolean, _) => "BOOLEAN".to_owned(),
            // Numbers, dates and datetimes are text: TEXT affinity keeps every digit as written.
            _ => "TEXT".to_owned(),
        }
    }

    fn accepts(field: &TargetField, declared: &str) -> bool {
        let affinity = affinity(declared);
        match field.field_type {
            TargetFieldType::Integer | TargetFieldType::Boolean => {
                matches!(affinity, Affinity::Integer | Affinity::Numeric)
            }
            _ => matches!(affinity, Affinity::Text | Affinity::Blob),
        }
    }

    fn push_rows<'a>(query: &mut Statement<'a, Self>, _: &[TargetFieldType], rows: &'a [Row]) {
        query.push("VALUES ");
        for (n, row) in rows.iter().enumerate() {
            query.push(if n == 0 { "(" } else { ", (" });
            query.bind(row.ordinal as i64);
            for cell in &row.cells {
                query.push(", ");
                match cell {
                    Cell::Null => query.bind(None::<i64>),
                    Cell::Text(text) => query.bind(text.as_str()),
                    Cell::Integer(number) => query.bind(*number),
                    Cell::Boolean(value) => query.bind(*value),
                    Cell::Date(date) => query.bind(date.format("%Y-%m-%d").to_string()),
                    Cell::DateTime(instant) => {
                        query.bind(instant.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                    }
                };
            }
            query.push(")");
        }
    }

    fn push_columns_query<'a>(query: &mut Statement<'a, Self>, table: &'a Table) {
        query.push("SELECT name, type FROM pragma_table_info(");
        query.bind(table.name.as_str());
        query.push(")");
    }

    fn push_unique_keys_query<'a>(query: &mut Statement<'a, Self>, table: &'a Table) {
        // An INTEGER PRIMARY KEY is the rowid and has no index: read the key from table_info.
        query.push("SELECT '', name FROM pragma_table_info(");
        query.bind(table.name.as_str());
        query.push(") WHERE pk > 0 UNION ALL SELECT list.name, info.name FROM pragma_index_list(");
        query.bind(table.name.as_str());
        query.push(") AS list, pragma_index_info(list.name) AS info WHERE list.\"unique\" = 1 AND list.partial = 0");
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_follows_sqlites_rules() {
        assert_eq!(affinity("VARCHAR(80)"), Affinity::Text);
        assert_eq!(affinity("BIGINT"), Affinity::Integer);
        assert_eq!(affinity("DECIMAL(19,4)"), Affinity::Numeric);
        assert_eq!(affinity("DOUBLE PRECISION"), Affinity::Real);
        assert_eq!(affinity(""), Affinity::Blob);
        let number = TargetField::new(TargetFieldType::Number);
        assert!(Sqlite::accepts(&number, "TEXT"));
        assert!(!Sqlite::accepts(&number, "NUMERIC"));
        assert!(!Sqlite::accepts(&number, "REAL"));
    }
}
