//! Value conversions, following the compatibility table: one Dataverse value, constant or
//! default into the type of its target field.

use super::plan::{Read, SourceColumn, SourceKind};
use super::schema::{Literal, TargetField, TargetFieldType, TargetValue};
use crate::value::{Field, Number, Value};
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};

/// A reason a value does not convert.
pub(super) type Reason = String;

/// Converts one non-null column value.
pub(super) fn convert_column(
    column: &SourceColumn,
    field: &Field,
    target: &TargetField,
) -> Result<TargetValue, Reason> {
    let name = &column.name;
    match column.read {
        Read::Label => {
            let label = field
                .formatted
                .clone()
                .or_else(|| option_label(column, &field.value))
                .ok_or_else(|| {
                    format!(
                        "no label came with `{name}`; request the OData.Community.Display.V1.FormattedValue annotation (see ValidatedMapping::needs_formatted_values)"
                    )
                })?;
            string(label, target)
        }
        Read::LookupTable => {
            let table = field
                .lookup_entity
                .clone()
                .or_else(|| match column.targets.as_slice() {
                    [only] => Some(only.clone()),
                    _ => None,
                })
                .ok_or_else(|| {
                    format!(
                        "no table name came with `{name}`; request the Microsoft.Dynamics.CRM.lookuplogicalname annotation (see ValidatedMapping::needs_lookup_annotations)"
                    )
                })?;
            string(table, target)
        }
        Read::Value => convert_value(column.kind, name, &field.value, target),
    }
}

fn option_label(column: &SourceColumn, value: &Value) -> Option<String> {
    let Value::Number(n) = value else {
        return None;
    };
    let n = n.as_i64()?;
    column
        .options
        .iter()
        .find(|o| o.value == n)
        .and_then(|o| o.label.clone())
}

fn convert_value(
    kind: SourceKind,
    name: &str,
    value: &Value,
    target: &TargetField,
) -> Result<TargetValue, Reason> {
    use TargetFieldType as T;
    let wrong = |expected: &str| {
        format!(
            "`{name}` holds {}, not {expected}; check that the metadata matches the instance",
            describe(value)
        )
    };
    match kind {
        SourceKind::Text | SourceKind::LongText | SourceKind::MultiChoice => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) if kind == SourceKind::MultiChoice => n.to_string(),
                _ => return Err(wrong("text")),
            };
            match target.field_type {
                T::Id => Ok(TargetValue::Id(text)),
                _ => string(text, target),
            }
        }
        SourceKind::WholeNumber | SourceKind::DecimalNumber | SourceKind::Choice => {
            let number = match value {
                Value::Number(n) => n.clone(),
                Value::String(s) => Number::parse(s).map_err(|_| wrong("a number"))?,
                _ => return Err(wrong("a number")),
            };
            number_to(number, target)
        }
        SourceKind::Boolean => {
            let Value::Bool(b) = value else {
                return Err(wrong("true or false"));
            };
            match target.field_type {
                T::Boolean => Ok(TargetValue::Bool(*b)),
                _ => string(b.to_string(), target),
            }
        }
        SourceKind::DateTime | SourceKind::DateOnly => {
            let Value::String(text) = value else {
                return Err(wrong("a date"));
            };
            let date_only = kind == SourceKind::DateOnly;
            text_to_date(text, date_only, target)
        }
        SourceKind::Guid | SourceKind::Lookup => {
            let Value::String(id) = value else {
                return Err(wrong("an id"));
            };
            match target.field_type {
                T::Id => Ok(TargetValue::Id(id.clone())),
                _ => string(id.clone(), target),
            }
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the text {s:?}"),
        Value::Json(_) => "a JSON array or object".into(),
    }
}

/// A string value, checked against the field's maximum length.
fn string(text: String, target: &TargetField) -> Result<TargetValue, Reason> {
    if let Some(max) = target.max_length {
        let length = text.chars().count();
        if length > max {
            return Err(format!(
                "the text is {length} characters long and the field holds at most {max}; shorten it in Dynamics or raise max_length"
            ));
        }
    }
    Ok(TargetValue::String(text))
}

/// A number into an integer, number or string field.
fn number_to(number: Number, target: &TargetField) -> Result<TargetValue, Reason> {
    match target.field_type {
        TargetFieldType::Number => Ok(TargetValue::Number(number)),
        TargetFieldType::Integer => integer(&number).map(TargetValue::Number),
        _ => string(number.as_str().to_owned(), target),
    }
}

/// The whole number `number` holds, as a plain integer literal.
fn integer(number: &Number) -> Result<Number, Reason> {
    let text = number.as_str();
    if text.contains(['e', 'E']) {
        return Err(format!(
            "{text} is in exponent form; an integer field takes plain whole numbers"
        ));
    }
    if number.has_fraction() {
        return Err(format!(
            "{text} has a fraction and the field is an integer; map it to a number field"
        ));
    }
    match number.as_i64() {
        Some(whole) => Number::parse(&whole.to_string()).map_err(|e| e.to_string()),
        None => Err(format!(
            "{text} is out of range for an integer field (64-bit); map it to a number field"
        )),
    }
}

/// A date or date-time text into a date, datetime or string field.
fn text_to_date(text: &str, date_only: bool, target: &TargetField) -> Result<TargetValue, Reason> {
    let malformed = || {
        if date_only {
            format!("{text:?} is not a date (YYYY-MM-DD, such as 2024-04-10)")
        } else {
            format!("{text:?} is not a date and time (RFC 3339, such as 2024-06-12T14:13:25Z)")
        }
    };
    if date_only {
        let date = parse_date(text).ok_or_else(malformed)?;
        match target.field_type {
            TargetFieldType::Date => Ok(TargetValue::Date(date)),
            TargetFieldType::DateTime => Ok(TargetValue::DateTime(
                date.and_time(NaiveTime::MIN).and_utc(),
            )),
            _ => string(date.format("%Y-%m-%d").to_string(), target),
        }
    } else {
        let instant = parse_datetime(text).ok_or_else(malformed)?;
        match target.field_type {
            TargetFieldType::Date => Ok(TargetValue::Date(instant.date_naive())),
            TargetFieldType::DateTime => Ok(TargetValue::DateTime(instant)),
            _ => string(instant.to_rfc3339_opts(SecondsFormat::AutoSi, true), target),
        }
    }
}

/// `YYYY-MM-DD`, or the date part of an RFC 3339 text.
fn parse_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .or_else(|| {
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.date_naive())
        })
}

/// An RFC 3339 instant, or `YYYY-MM-DD` as midnight UTC.
fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN).and_utc())
        })
}

/// Converts a job file's constant or default into the field's type.
pub(super) fn literal_to(literal: &Literal, target: &TargetField) -> Result<TargetValue, Reason> {
    use TargetFieldType as T;
    let refuse = |what: &str| {
        Err(format!(
            "{what} does not fit a {} field; give a value of the field's type",
            target.field_type
        ))
    };
    match literal {
        Literal::Null => Ok(TargetValue::Null),
        Literal::Bool(b) => match target.field_type {
            T::Boolean => Ok(TargetValue::Bool(*b)),
            T::String => string(b.to_string(), target),
            _ => refuse(&format!("the boolean {b}")),
        },
        Literal::Number(n) => match target.field_type {
            T::Number | T::Integer | T::String => number_to(n.clone(), target),
            _ => refuse(&format!("the number {n}")),
        },
        Literal::String(s) => match target.field_type {
            T::String => string(s.clone(), target),
            T::Id => Ok(TargetValue::Id(s.clone())),
            T::Number | T::Integer => {
                let number = Number::parse(s).map_err(|_| format!("{s:?} is not a number"))?;
                number_to(number, target)
            }
            T::Date | T::DateTime => text_to_date(s, target.field_type == T::Date, target),
            T::Boolean => refuse(&format!("the text {s:?}")),
        },
    }
}

/// A column's own value, as a derived lookup's match value.
pub(super) fn natural(column: &SourceColumn, value: &Value) -> Result<TargetValue, Reason> {
    let as_type = TargetField::new(column.kind.natural_type());
    convert_value(column.kind, &column.name, value, &as_type)
}

/// A looked-up id into an id or string field.
pub(super) fn id_into(id: String, target: &TargetField) -> Result<TargetValue, Reason> {
    match target.field_type {
        TargetFieldType::Id => Ok(TargetValue::Id(id)),
        _ => string(id, target),
    }
}
