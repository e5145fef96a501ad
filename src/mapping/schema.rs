//! The target object's schema, the job file's mapping keys and the values written to the sink.

use crate::value::Number;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The type of one field of a target object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetFieldType {
    /// Text (`"string"`).
    #[serde(rename = "string")]
    String,
    /// A 64-bit whole number (`"integer"`).
    #[serde(rename = "integer")]
    Integer,
    /// A decimal number of any size and precision, kept digit for digit (`"number"`).
    #[serde(rename = "number")]
    Number,
    /// `true` or `false` (`"boolean"`).
    #[serde(rename = "boolean")]
    Boolean,
    /// A calendar date, written `YYYY-MM-DD` (`"date"`).
    #[serde(rename = "date")]
    Date,
    /// An instant, written in RFC 3339 UTC such as `2024-06-12T14:13:25Z` (`"datetime"`).
    #[serde(rename = "datetime")]
    DateTime,
    /// A record id, written as a string (`"id"`).
    #[serde(rename = "id")]
    Id,
}

impl TargetFieldType {
    /// The name used in job files (`"datetime"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TargetFieldType::String => "string",
            TargetFieldType::Integer => "integer",
            TargetFieldType::Number => "number",
            TargetFieldType::Boolean => "boolean",
            TargetFieldType::Date => "date",
            TargetFieldType::DateTime => "datetime",
            TargetFieldType::Id => "id",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => TargetFieldType::String,
            "integer" => TargetFieldType::Integer,
            "number" => TargetFieldType::Number,
            "boolean" => TargetFieldType::Boolean,
            "date" => TargetFieldType::Date,
            "datetime" => TargetFieldType::DateTime,
            "id" => TargetFieldType::Id,
            _ => return None,
        })
    }
}

impl fmt::Display for TargetFieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field of a target object: its type and, for strings, an optional maximum length.
///
/// In a job file either the type alone (`"Email": "string"`) or an object
/// (`"Email": {"type": "string", "max_length": 80}`); the length counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetField {
    /// The field's type.
    pub field_type: TargetFieldType,
    /// For string fields, the most characters the field holds; longer values fail the record.
    pub max_length: Option<usize>,
}

impl TargetField {
    /// A field of type `field_type` with no length limit.
    pub fn new(field_type: TargetFieldType) -> Self {
        Self {
            field_type,
            max_length: None,
        }
    }

    /// Sets the maximum length (in characters) of a string field.
    pub fn with_max_length(mut self, max_length: usize) -> Self {
        self.max_length = Some(max_length);
        self
    }
}

impl Serialize for TargetField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.max_length {
            None => self.field_type.serialize(serializer),
            Some(max_length) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", &self.field_type)?;
                map.serialize_entry("max_length", &max_length)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for TargetField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const EXPECTED: &str = "one of string, integer, number, boolean, date, datetime or id (or {\"type\": ..., \"max_length\": n})";
        let value = serde_json::Value::deserialize(deserializer)?;
        let type_of = |name: &serde_json::Value| match name.as_str() {
            Some(name) => TargetFieldType::parse(name).ok_or_else(|| {
                de::Error::custom(format!(
                    "`{name}` is not a target field type; use {EXPECTED}"
                ))
            }),
            None => Err(de::Error::custom(format!(
                "a target field type must be a string: {EXPECTED}"
            ))),
        };
        match &value {
            serde_json::Value::Object(object) => {
                if let Some(key) = object
                    .keys()
                    .find(|k| k.as_str() != "type" && k.as_str() != "max_length")
                {
                    return Err(de::Error::custom(format!(
                        "unknown key `{key}` in a target field; use `type` and `max_length`"
                    )));
                }
                let field_type =
                    type_of(object.get("type").ok_or_else(|| {
                        de::Error::custom("a target field object needs a `type`")
                    })?)?;
                let max_length = match object.get("max_length") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(n) => Some(
                        n.as_u64()
                            .and_then(|n| usize::try_from(n).ok())
                            .ok_or_else(|| {
                                de::Error::custom(
                                    "`max_length` must be a whole number of characters",
                                )
                            })?,
                    ),
                };
                Ok(TargetField {
                    field_type,
                    max_length,
                })
            }
            other => Ok(TargetField::new(type_of(other)?)),
        }
    }
}

/// A target object of the host platform: its name, fields and required fields.
///
/// ```json
/// { "object": "Person",
///   "fields": { "ExternalId": "id", "Email": {"type": "string", "max_length": 80} },
///   "required": ["ExternalId"] }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSchema {
    /// The object's name (`Person`).
    pub object: String,
    /// Every field by name.
    pub fields: BTreeMap<String, TargetField>,
    /// The fields every record must fill; a mapping must write each one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
}

impl TargetSchema {
    /// An object named `object` with no fields.
    pub fn new(object: impl Into<String>) -> Self {
        Self {
            object: object.into(),
            fields: BTreeMap::new(),
            required: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn with_field(mut self, name: impl Into<String>, field: TargetField) -> Self {
        self.fields.insert(name.into(), field);
        self
    }

    /// Marks a field as required.
    pub fn with_required(mut self, name: impl Into<String>) -> Self {
        self.required.push(name.into());
        self
    }

    /// The field named `name`.
    pub fn field(&self, name: &str) -> Option<&TargetField> {
        self.fields.get(name)
    }

    /// Whether `name` is a required field.
    pub fn is_required(&self, name: &str) -> bool {
        self.required.iter().any(|r| r == name)
    }
}

/// A value written in a job file: for a `constant` or a `default`.
///
/// It is converted to the target field's type when the mapping is validated. Numbers keep the
/// digits they were read with; a number with more than 15 significant digits should be given
/// as a string (`"12345678901234567.89"`), which a number or integer field parses exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    String(String),
}

impl Serialize for Literal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Literal::Null => serializer.serialize_unit(),
            Literal::Bool(b) => serializer.serialize_bool(*b),
            Literal::Number(n) => n.serialize(serializer),
            Literal::String(s) => serializer.serialize_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LiteralVisitor;

        impl<'de> Visitor<'de> for LiteralVisitor {
            type Value = Literal;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Literal, E> {
                Ok(Literal::Null)
            }

            fn visit_none<E: de::Error>(self) -> Result<Literal, E> {
                Ok(Literal::Null)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Literal, D::Error> {
                Literal::deserialize(d)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Literal, E> {
                Ok(Literal::Bool(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Literal, E> {
                Number::parse(&v.to_string())
                    .map(Literal::Number)
                    .map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Literal, E> {
                Number::parse(&v.to_string())
                    .map(Literal::Number)
                    .map_err(E::custom)
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Literal, E> {
                let number = serde_json::Number::from_f64(v)
                    .ok_or_else(|| E::custom("a constant number must be finite"))?;
                Number::parse(&number.to_string())
                    .map(Literal::Number)
                    .map_err(E::custom)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Literal, E> {
                Ok(Literal::String(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Literal, E> {
                Ok(Literal::String(v))
            }
        }

        deserializer.deserialize_any(LiteralVisitor)
    }
}

/// One value written to a target field.
///
/// Serializes as the sink expects: strings, ids and labels as JSON strings, numbers as JSON
/// numbers with every digit of the source, dates as `YYYY-MM-DD`, datetimes as RFC 3339 UTC
/// (`2024-06-12T14:13:25Z`), booleans, and `null`.
///
/// Deserializes from that form without a schema: `null`, booleans and numbers come back as
/// they were written (numbers as [`Literal`]s are read: exact up to 15 significant digits),
/// and every string as [`TargetValue::String`], since JSON does not tell an id or a date from
/// text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetValue {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number (integer fields hold whole numbers only).
    Number(Number),
    /// Text, including a choice's label.
    String(String),
    /// A record id.
    Id(String),
    /// A calendar date.
    Date(NaiveDate),
    /// An instant in UTC.
    DateTime(DateTime<Utc>),
}

impl TargetValue {
    /// Whether the value is [`TargetValue::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, TargetValue::Null)
    }

    /// The text of a string or id value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            TargetValue::String(s) | TargetValue::Id(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for TargetValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            TargetValue::Null => serializer.serialize_unit(),
            TargetValue::Bool(b) => serializer.serialize_bool(*b),
            TargetValue::Number(n) => n.serialize(serializer),
            TargetValue::String(s) | TargetValue::Id(s) => serializer.serialize_str(s),
            TargetValue::Date(d) => serializer.collect_str(&d.format("%Y-%m-%d")),
            TargetValue::DateTime(t) => {
                serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
        }
    }
}

/// One record for the target object: field name to value, in mapping order.
///
/// Serializes as a JSON object, and deserializes from one (each value as
/// [`TargetValue`] says). Two records are equal, and hash alike, when they hold the same fields
/// with the same values in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TargetRecord {
    /// Names are shared: every record a mapping converts holds the mapping's own.
    fields: Vec<(Arc<str>, TargetValue)>,
}

impl TargetRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty record with room for `fields` fields.
    pub(crate) fn with_capacity(fields: usize) -> Self {
        Self {
            fields: Vec::with_capacity(fields),
        }
    }

    /// Sets `field` to `value`, replacing an earlier value and keeping its position.
    pub fn insert(&mut self, field: impl Into<String>, value: TargetValue) {
        let field = field.into();
        match self.fields.iter_mut().find(|(name, _)| **name == *field) {
            Some((_, existing)) => *existing = value,
            None => self.fields.push((field.into(), value)),
        }
    }

    /// Appends `field`, which the caller knows is not in the record yet.
    pub(crate) fn push(&mut self, field: Arc<str>, value: TargetValue) {
        self.fields.push((field, value));
    }

    /// The field at `position`, in order.
    pub(crate) fn field_at(&self, position: usize) -> Option<(&str, &TargetValue)> {
        self.fields
            .get(position)
            .map(|(name, value)| (&**name, value))
    }

    /// Every value in order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &TargetValue> {
        self.fields.iter().map(|(_, value)| value)
    }

    /// The value of `field`.
    pub fn get(&self, field: &str) -> Option<&TargetValue> {
        self.fields
            .iter()
            .find(|(name, _)| **name == *field)
            .map(|(_, value)| value)
    }

    /// Every field in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TargetValue)> {
        self.fields.iter().map(|(name, value)| (&**name, value))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl Serialize for TargetRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (name, value) in &self.fields {
            map.serialize_entry(&**name, value)?;
        }
        map.end()
    }
}

impl From<Literal> for TargetValue {
    fn from(literal: Literal) -> Self {
        match literal {
            Literal::Null => TargetValue::Null,
            Literal::Bool(b) => TargetValue::Bool(b),
            Literal::Number(n) => TargetValue::Number(n),
            Literal::String(s) => TargetValue::String(s),
        }
    }
}

impl<'de> Deserialize<'de> for TargetValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Literal::deserialize(deserializer).map(TargetValue::from)
    }
}

impl<'de> Deserialize<'de> for TargetRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;

        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = TargetRecord;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a record: an object of field names and values")
            }

            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TargetRecord, A::Error> {
                let mut record = TargetRecord::new();
                while let Some((field, value)) = map.next_entry::<String, TargetValue>()? {
                    record.insert(field, value);
                }
                Ok(record)
            }
        }

        deserializer.deserialize_map(RecordVisitor)
    }
}
