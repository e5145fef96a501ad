//! Conversion of Dataverse values into target values, following the compatibility table.

use super::derived::{MultipleMatches, TargetLookup};
use super::schema::{Literal, TargetField, TargetFieldType, TargetRecord, TargetValue};
use crate::error::{Error, ErrorKind};
use crate::metadata::{AttributeMetadata, AttributeType, OptionLabel};
use crate::value::{Field, Number, Value};
use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why one record could not be converted; the other records of the page go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    /// The Dynamics record's primary id.
    pub record_id: String,
    /// The target field that could not be filled; for a record the sink refused, the field
    /// the sink named, or [`RecordFailure::WHOLE_RECORD`].
    pub field: String,
    /// The source column read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What went wrong and what to do, in one sentence.
    pub reason: String,
    /// The kind of failure.
    pub kind: RecordFailureKind,
}

/// The kinds of [`RecordFailure`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFailureKind {
    /// A value could not be converted (too long, out of range, malformed, wrong type).
    Conversion,
    /// A required field or an identifier got no value.
    Required,
    /// The host's [`TargetLookup`] failed, or none was given for a derived mapping.
    Lookup,
    /// A derived lookup matched several records and its policy is `fail`.
    MultipleMatches,
    /// The record sink refused the record.
    Write,
}

impl RecordFailure {
    /// The field of a record the sink refused without naming a field: `*`, the whole record.
    pub const WHOLE_RECORD: &'static str = "*";
}

impl fmt::Display for RecordFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {}, field `{}`: {}",
            self.record_id, self.field, self.reason
        )
    }
}

impl std::error::Error for RecordFailure {}

impl From<RecordFailure> for Error {
    fn from(failure: RecordFailure) -> Self {
        Error::new(
            ErrorKind::Mapping,
            format!(
                "record {} could not be converted (field `{}`)",
                failure.record_id, failure.field
            ),
        )
        .with_source(failure)
    }
}

/// What a source column is, for conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SourceKind {
    Text,
    LongText,
    WholeNumber,
    DecimalNumber,
    Boolean,
    DateTime,
    DateOnly,
    Choice,
    MultiChoice,
    Guid,
    Lookup,
}

impl SourceKind {
    /// The kind of a syncable column; `None` for the unsupported ones.
    pub(super) fn of(attribute: &AttributeMetadata) -> Option<Self> {
        Some(match attribute.attribute_type() {
            AttributeType::String => SourceKind::Text,
            AttributeType::Memo | AttributeType::EntityName => SourceKind::LongText,
            AttributeType::Integer | AttributeType::BigInt => SourceKind::WholeNumber,
            AttributeType::Decimal | AttributeType::Money | AttributeType::Double => {
                SourceKind::DecimalNumber
            }
            AttributeType::Boolean => SourceKind::Boolean,
            AttributeType::DateTime if attribute.is_date_only() => SourceKind::DateOnly,
            AttributeType::DateTime => SourceKind::DateTime,
            AttributeType::Picklist | AttributeType::State | AttributeType::Status => {
                SourceKind::Choice
            }
            AttributeType::MultiSelectPicklist => SourceKind::MultiChoice,
            AttributeType::Uniqueidentifier => SourceKind::Guid,
            AttributeType::Lookup | AttributeType::Customer | AttributeType::Owner => {
                SourceKind::Lookup
            }
            _ => return None,
        })
    }
}

/// Which part of a column a mapping reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Read {
    Value,
    Label,
    LookupTable,
}

/// The compatibility table: the target types a column of `kind`, read as `read`, converts to.
pub(super) fn compatible_targets(kind: SourceKind, read: Read) -> &'static [TargetFieldType] {
    use TargetFieldType as T;
    match (read, kind) {
        (Read::Label, _) | (Read::LookupTable, _) => &[T::String],
        (Read::Value, SourceKind::Text) => &[T::String, T::Id],
        (Read::Value, SourceKind::LongText) => &[T::String],
        (Read::Value, SourceKind::WholeNumber | SourceKind::DecimalNumber | SourceKind::Choice) => {
            &[T::String, T::Integer, T::Number]
        }
        (Read::Value, SourceKind::Boolean) => &[T::String, T::Boolean],
        (Read::Value, SourceKind::DateTime | SourceKind::DateOnly) => {
            &[T::String, T::Date, T::DateTime]
        }
        (Read::Value, SourceKind::MultiChoice) => &[T::String],
        (Read::Value, SourceKind::Guid | SourceKind::Lookup) => &[T::String, T::Id],
    }
}

/// A column a validated mapping reads.
#[derive(Debug, Clone)]
pub(super) struct SourceColumn {
    pub(super) name: String,
    pub(super) kind: SourceKind,
    pub(super) read: Read,
    pub(super) options: Vec<OptionLabel>,
    pub(super) targets: Vec<String>,
}

/// Where a validated mapping's value comes from.
#[derive(Debug, Clone)]
pub(super) enum StepSource {
    Column(SourceColumn),
    Constant(TargetValue),
    Derived {
        object: String,
        criteria: Vec<(String, SourceColumn)>,
        multiple: MultipleMatches,
    },
}

/// One validated mapping.
#[derive(Debug, Clone)]
pub(super) struct Step {
    pub(super) target: String,
    pub(super) field: TargetField,
    pub(super) source: StepSource,
    pub(super) default: Option<TargetValue>,
}

/// A reason a value does not convert.
type Reason = String;

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
fn natural(column: &SourceColumn, value: &Value) -> Result<TargetValue, Reason> {
    let as_type = match column.kind {
        SourceKind::Text | SourceKind::LongText | SourceKind::MultiChoice => {
            TargetFieldType::String
        }
        SourceKind::WholeNumber | SourceKind::DecimalNumber | SourceKind::Choice => {
            TargetFieldType::Number
        }
        SourceKind::Boolean => TargetFieldType::Boolean,
        SourceKind::DateTime => TargetFieldType::DateTime,
        SourceKind::DateOnly => TargetFieldType::Date,
        SourceKind::Guid | SourceKind::Lookup => TargetFieldType::Id,
    };
    convert_value(column.kind, &column.name, value, &TargetField::new(as_type))
}

/// Runs every step on one record.
pub(super) async fn convert_record(
    steps: &[Step],
    record: &crate::value::Record,
    lookup: Option<&dyn TargetLookup>,
) -> Result<TargetRecord, RecordFailure> {
    let mut out = TargetRecord::new();
    for step in steps {
        let fail = |source: Option<&str>, kind: RecordFailureKind, reason: String| RecordFailure {
            record_id: record.id().to_owned(),
            field: step.target.clone(),
            source: source.map(str::to_owned),
            reason,
            kind,
        };
        let value = match &step.source {
            StepSource::Constant(value) => value.clone(),
            StepSource::Column(column) => match record.get(&column.name) {
                Some(field) if !field.value.is_null() => convert_column(column, field, &step.field)
                    .map_err(|reason| {
                        fail(Some(&column.name), RecordFailureKind::Conversion, reason)
                    })?,
                _ => TargetValue::Null,
            },
            StepSource::Derived {
                object,
                criteria,
                multiple,
            } => {
                let mut values = TargetRecord::new();
                let mut complete = true;
                for (match_field, column) in criteria {
                    match record.get(&column.name).map(|f| &f.value) {
                        Some(value) if !value.is_null() => {
                            let converted = natural(column, value).map_err(|reason| {
                                fail(Some(&column.name), RecordFailureKind::Conversion, reason)
                            })?;
                            values.insert(match_field.clone(), converted);
                        }
                        _ => complete = false,
                    }
                }
                if complete {
                    let lookup = lookup.ok_or_else(|| {
                        fail(
                            None,
                            RecordFailureKind::Lookup,
                            format!(
                                "the field is derived from `{object}` records but no TargetLookup was given to convert()"
                            ),
                        )
                    })?;
                    let ids = lookup.find_ids(object, &values).await.map_err(|e| {
                        fail(
                            None,
                            RecordFailureKind::Lookup,
                            format!("the lookup of `{object}` failed: {e}"),
                        )
                    })?;
                    match (ids.as_slice(), multiple) {
                        ([], _) => TargetValue::Null,
                        ([id], _) | ([id, ..], MultipleMatches::Any) => {
                            id_into(id.clone(), &step.field).map_err(|reason| {
                                fail(None, RecordFailureKind::Conversion, reason)
                            })?
                        }
                        (many, MultipleMatches::Fail) => {
                            return Err(fail(
                                None,
                                RecordFailureKind::MultipleMatches,
                                format!(
                                    "{} `{object}` records match {}; make the match fields unique or set \"multiple\": \"any\"",
                                    if many.len() > 2 {
                                        format!("{}", many.len())
                                    } else {
                                        "several".into()
                                    },
                                    serde_json::to_string(&values).unwrap_or_default()
                                ),
                            ));
                        }
                    }
                } else {
                    TargetValue::Null
                }
            }
        };
        let value = match (value, &step.default) {
            (TargetValue::Null, Some(default)) => default.clone(),
            (value, _) => value,
        };
        out.insert(step.target.clone(), value);
    }
    Ok(out)
}

fn id_into(id: String, target: &TargetField) -> Result<TargetValue, Reason> {
    match target.field_type {
        TargetFieldType::Id => Ok(TargetValue::Id(id)),
        _ => string(id, target),
    }
}
