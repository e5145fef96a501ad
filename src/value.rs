//! Dataverse values and records, with numbers kept digit for digit.

use crate::error::{Error, Result};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A JSON number kept exactly as Dataverse sent it (`922337203685477.5807`, `1.000000000000`).
///
/// Money, Decimal and BigInt columns exceed what an `f64` holds; this type never rounds. It
/// serializes back as a JSON number with the same digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Number(String);

impl Number {
    /// Validates `literal` as a JSON number and keeps its text.
    pub fn parse(literal: &str) -> Result<Self> {
        if is_json_number(literal) {
            Ok(Self(literal.to_owned()))
        } else {
            Err(Error::decode(format!("`{literal}` is not a number")))
        }
    }

    /// The number's text, exactly as received.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value as an `i64` when it is a whole number in range (`5000000.0000` counts).
    pub fn as_i64(&self) -> Option<i64> {
        let (whole, fraction) = split_fraction(&self.0)?;
        if fraction.bytes().all(|b| b == b'0') {
            whole.parse().ok()
        } else {
            None
        }
    }

    /// The value as an `f64`, which may round large or very precise values.
    pub fn as_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }

    /// Whether the number has a non-zero fractional part.
    pub fn has_fraction(&self) -> bool {
        split_fraction(&self.0).is_none_or(|(_, fraction)| fraction.bytes().any(|b| b != b'0'))
    }
}

/// Splits a plain decimal literal into its whole and fractional digits; `None` for exponents.
fn split_fraction(literal: &str) -> Option<(&str, &str)> {
    if literal.contains(['e', 'E']) {
        return None;
    }
    Some(literal.split_once('.').unwrap_or((literal, "")))
}

/// Whether `text` is a number in JSON's grammar.
fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    if bytes.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let int_len = digits(&mut i);
    if int_len == 0 || (int_len > 1 && bytes[int_start] == b'0') {
        return false;
    }
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
        i += 1;
        if i < bytes.len() && (bytes[i] == b'+' || bytes[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

impl fmt::Debug for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Number {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A RawValue is written verbatim by serde_json, so no digit is lost.
        let raw = serde_json::value::RawValue::from_string(self.0.clone())
            .map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// One column value as Dataverse returned it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// JSON `null`.
    Null,
    /// A Boolean (Two Options) column.
    Bool(bool),
    /// Any number, exactly as sent.
    Number(Number),
    /// A string: text, GUIDs, dates (`2024-06-12T14:13:25Z`, `2024-04-10`), multi-select values.
    String(String),
    /// An array or object, kept as its JSON text.
    Json(String),
}

impl Value {
    /// Whether the value is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One column of a record: its value and the annotations Dataverse sent with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The value itself. For lookup columns this is the referenced record's id.
    pub value: Value,
    /// `OData.Community.Display.V1.FormattedValue`: the label of a choice, a formatted number or
    /// date, when requested.
    pub formatted: Option<String>,
    /// `Microsoft.Dynamics.CRM.lookuplogicalname`: the table a lookup points at (`account` or
    /// `contact` for a Customer column), when requested.
    pub lookup_entity: Option<String>,
}

impl Field {
    /// A field with a plain value and no annotations.
    pub fn new(value: Value) -> Self {
        Self {
            value,
            formatted: None,
            lookup_entity: None,
        }
    }
}

/// One Dataverse row, its columns keyed by attribute logical name.
///
/// Lookup columns are keyed by their logical name (`parentcustomerid`), not by the Web API's
/// `_parentcustomerid_value` property.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Record {
    id: String,
    etag: Option<String>,
    fields: BTreeMap<String, Field>,
}

impl Record {
    /// A record with the primary id `id` and no fields.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            etag: None,
            fields: BTreeMap::new(),
        }
    }

    /// The row's version as Dataverse sent it (`@odata.etag`, such as `W/"2264380"`); it
    /// changes with every change to the row.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Sets the row's version (`@odata.etag`).
    pub fn set_etag(&mut self, etag: Option<String>) {
        self.etag = etag;
    }

    /// The record's primary id (a GUID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The field with logical name `name`.
    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.get(name)
    }

    /// Sets the field `name`.
    pub fn insert(&mut self, name: impl Into<String>, field: Field) {
        self.fields.insert(name.into(), field);
    }

    /// Every field, ordered by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Field)> {
        self.fields
            .iter()
            .map(|(name, field)| (name.as_str(), field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_every_digit() {
        for literal in [
            "922337203685477.5807",
            "9007199254740993",
            "1.000000000000",
            "-0.5",
            "1e3",
        ] {
            let number = Number::parse(literal).unwrap();
            assert_eq!(serde_json::to_string(&number).unwrap(), literal);
        }
    }

    #[test]
    fn rejects_what_json_rejects() {
        for bad in ["", "-", "01", "1.", ".5", "1e", "NaN", "1 ", "+1"] {
            assert!(Number::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn whole_numbers_with_zero_fractions_are_integers() {
        assert_eq!(
            Number::parse("5000000.0000000000").unwrap().as_i64(),
            Some(5_000_000)
        );
        assert_eq!(Number::parse("1.5").unwrap().as_i64(), None);
        assert!(Number::parse("1.5").unwrap().has_fraction());
        assert!(!Number::parse("2.000").unwrap().has_fraction());
    }
}
