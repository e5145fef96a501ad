//! Dataverse values and records, with numbers kept digit for digit.

use crate::error::{Error, Result};
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
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
/// shorter stays valid. `slots` finds a name's slot in O(1); `by_name` holds the slots sorted
/// by name, for iteration in name order.
#[derive(Clone, Default, Debug)]
pub(crate) struct Columns {
    names: Vec<Arc<str>>,
    slots: NameMap<Arc<str>, usize>,
    by_name: Vec<usize>,
}

impl Columns {
    /// How many names the list holds.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// The slot of `name`, if the list holds it.
    pub(crate) fn slot(&self, name: &str) -> Option<usize> {
        self.slots.get(name).copied()
    }

    /// The slot of `name`, adding it at the next slot when the list lacks it.
    pub(crate) fn add(&mut self, name: Arc<str>) -> usize {
        if let Some(slot) = self.slot(&name) {
            return slot;
        }
        let slot = self.names.len();
        let at = self
            .by_name
            .partition_point(|&other| *self.names[other] < *name);
        self.by_name.insert(at, slot);
        self.slots.insert(name.clone(), slot);
        self.names.push(name);
        slot
    }

    /// Every slot with its name, ordered by name.
    pub(crate) fn by_name(&self) -> impl Iterator<Item = (usize, &str)> {
        self.by_name
            .iter()
            .map(|&slot| (slot, self.names[slot].as_ref()))
    }
}

/// A hash map keyed by column or property name.
pub(crate) type NameMap<K, V> = HashMap<K, V, BuildHasherDefault<NameHasher>>;

/// Hashes names a word at a time: half the cost of the standard SipHash for a 20-byte name.
///
/// Names come from Dataverse and from the host, not from an adversary, so collisions chosen
/// to slow the map down are no concern.
#[derive(Default)]
pub(crate) struct NameHasher(u64);

impl NameHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().unwrap_or_default()));
        }
        let mut last = [0; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(last));
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

    fn record(id: &str, fields: &[(&str, &str)]) -> Record {
        let mut record = Record::new(id);
        for (name, value) in fields {
            record.insert(*name, Field::new(Value::String((*value).to_owned())));
        }
        record
    }

    fn names(record: &Record) -> Vec<&str> {
        record.fields().map(|(name, _)| name).collect()
    }

    #[test]
    fn fields_come_in_name_order_whatever_the_order_of_insertion() {
        let record = record("1", &[("name", "a"), ("accountid", "1"), ("revenue", "5")]);
        assert_eq!(names(&record), ["accountid", "name", "revenue"]);
        assert_eq!(record.get("name").unwrap().value.as_str(), Some("a"));
        assert_eq!(record.get("missing"), None);
    }

    #[test]
    fn inserting_a_name_again_replaces_its_field() {
        let mut record = record("1", &[("name", "a")]);
        record.insert("name", Field::new(Value::Null));
        assert_eq!(names(&record), ["name"]);
        assert!(record.get("name").unwrap().value.is_null());
    }

    fn text(value: &str) -> Option<Field> {
        Some(Field::new(Value::String(value.to_owned())))
    }

    #[test]
    fn records_sharing_a_column_list_keep_their_own_fields() {
        let mut columns = Columns::default();
        assert_eq!(columns.add("name".into()), 0);
        assert_eq!(columns.add("city".into()), 1);
        assert_eq!(columns.add("name".into()), 0);
        let columns = Arc::new(columns);
        let mut first = Record::from_slots(
            "1".into(),
            None,
            columns.clone(),
            vec![text("a"), text("b")],
        );
        // Fewer slots than columns: the last ones are empty.
        let second = Record::from_slots("2".into(), None, columns.clone(), vec![text("c")]);
        assert_eq!(second.get("city"), None);
        assert_eq!(names(&second), ["name"]);

        first.insert("zip", Field::new(Value::Null));
        assert_eq!(names(&first), ["city", "name", "zip"]);
        assert_eq!(second.get("zip"), None);
        assert_eq!(columns.len(), 2, "the shared list is copied, not changed");
    }

    #[test]
    fn equality_compares_names_and_fields_not_column_lists() {
        let inserted = record("1", &[("name", "a"), ("city", "b")]);
        let mut columns = Columns::default();
        for name in ["zip", "city", "name"] {
            columns.add(name.into());
        }
        let by_slot = Record::from_slots(
            "1".into(),
            None,
            Arc::new(columns),
            vec![None, text("b"), text("a")],
        );
        assert_eq!(inserted, by_slot);
        assert_ne!(inserted, record("1", &[("name", "a")]));
        assert_ne!(inserted, record("2", &[("name", "a"), ("city", "b")]));
        let mut versioned = inserted.clone();
        versioned.set_etag(Some("W/\"1\"".into()));
        assert_ne!(inserted, versioned);
    }

    #[test]
    fn debug_shows_the_fields_by_name() {
        let record = record("1", &[("name", "a")]);
        assert_eq!(
            format!("{record:?}"),
            r#"Record { id: "1", etag: None, fields: {"name": Field { value: String("a"), formatted: None, lookup_entity: None }} }"#
        );
    }

    #[test]
    fn a_wide_column_list_finds_every_name() {
        let mut columns = Columns::default();
        for i in (0..5000).rev() {
            columns.add(format!("column{i:04}").into());
        }
        assert_eq!(columns.slot("column4999"), Some(0));
        assert_eq!(columns.slot("column0000"), Some(4999));
        assert_eq!(columns.by_name().next(), Some((4999, "column0000")));
        assert_eq!(columns.slot("column5000"), None);
    }
}
