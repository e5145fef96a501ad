//! Dataverse values and records, with numbers kept digit for digit.

use crate::error::{Error, Result};
use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

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
///
/// The records of one page share their list of column names: each record holds its fields by
/// slot, so decoding a row allocates no names.
#[derive(Clone, Default)]
pub struct Record {
    id: String,
    etag: Option<String>,
    columns: Arc<Columns>,
    /// By slot of `columns`; shorter than `columns` when the last slots are empty.
    fields: Vec<Option<Field>>,
}

impl Record {
    /// A record with the primary id `id` and no fields.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// A record whose fields are given by slot of `columns`.
    pub(crate) fn from_slots(
        id: String,
        etag: Option<String>,
        columns: Arc<Columns>,
        fields: Vec<Option<Field>>,
    ) -> Self {
        debug_assert!(fields.len() <= columns.len());
        Self {
            id,
            etag,
            columns,
            fields,
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
        let slot = self.columns.slot(name)?;
        self.fields.get(slot)?.as_ref()
    }

    /// Sets the field `name`.
    ///
    /// A name the record's column list lacks is added to the record's own copy of the list.
    pub fn insert(&mut self, name: impl Into<String>, field: Field) {
        let name = name.into();
        let slot = match self.columns.slot(&name) {
            Some(slot) => slot,
            None => Arc::make_mut(&mut self.columns).add(name.into()),
        };
        if slot >= self.fields.len() {
            self.fields.resize_with(slot + 1, || None);
        }
        self.fields[slot] = Some(field);
    }

    /// Every field, ordered by name.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Field)> {
        self.columns
            .by_name()
            .filter_map(|(slot, name)| Some((name, self.fields.get(slot)?.as_ref()?)))
    }
}

impl PartialEq for Record {
    /// Records are equal when their ids, etags and fields are, whatever their column lists.
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.etag == other.etag && self.fields().eq(other.fields())
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Fields<'a>(&'a Record);
        impl fmt::Debug for Fields<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map().entries(self.0.fields()).finish()
            }
        }
        f.debug_struct("Record")
            .field("id", &self.id)
            .field("etag", &self.etag)
            .field("fields", &Fields(self))
            .finish()
    }
}

/// Column names, each at a slot that never changes: records decoded together share one list.
///
/// Slots are numbered in the order names are added, so a record made while the list was
/// shorter stays valid; `by_name` holds the slots sorted by name, for lookups in O(log n) and
/// iteration in name order.
#[derive(Clone, Default, Debug)]
pub(crate) struct Columns {
    names: Vec<Arc<str>>,
    by_name: Vec<usize>,
}

impl Columns {
    /// How many names the list holds.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The slot of `name`, if the list holds it.
    pub(crate) fn slot(&self, name: &str) -> Option<usize> {
        self.search(name).ok().map(|at| self.by_name[at])
    }

    /// The slot of `name`, adding it at the next slot when the list lacks it.
    pub(crate) fn add(&mut self, name: Arc<str>) -> usize {
        match self.search(&name) {
            Ok(at) => self.by_name[at],
            Err(at) => {
                let slot = self.names.len();
                self.names.push(name);
                self.by_name.insert(at, slot);
                slot
            }
        }
    }

    /// Every slot with its name, ordered by name.
    pub(crate) fn by_name(&self) -> impl Iterator<Item = (usize, &str)> {
        self.by_name
            .iter()
            .map(|&slot| (slot, self.names[slot].as_ref()))
    }

    /// Where `name` is, or would be, in `by_name`.
    fn search(&self, name: &str) -> std::result::Result<usize, usize> {
        self.by_name
            .binary_search_by(|&slot| self.names[slot].as_ref().cmp(name))
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
