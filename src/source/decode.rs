//! Web API JSON to records, without an intermediate JSON tree and without touching `f64`.
//!
//! The body is walked once with serde. Each property key is worked out once per page (which
//! column slot it fills, or which annotation it is), every property value is borrowed as a
//! [`RawValue`](serde_json::value::RawValue) slice of the body and read from there: numbers
//! keep their exact text ([`Number`]), strings without escapes are copied straight out of the
//! body. The records of a page share one list of column names, built from the table's
//! attribute names, so a row allocates its field list and its values only.

mod properties;
mod row;

use super::page::{PageCounts, RecordChange};
use crate::client::{FORMATTED_VALUE_ANNOTATION, LOOKUP_TABLE_ANNOTATION};
use crate::error::{Error, Result};
use crate::metadata::{EntityMetadata, lookup_of_value_property};
use crate::value::{Columns, NameMap, Number, Record, Value};
use properties::{Property, PropertyKeys};
use row::{Annotation, DecodedRow, RowBuilder};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Decodes Dataverse Web API JSON (one record, or a collection page) into [`Record`]s the way
/// [`EntitySource`](crate::EntitySource) does.
///
/// - `_<name>_value` properties of lookup, Customer and Owner columns become the field
///   `<name>`, with the `lookuplogicalname` annotation in [`Field::lookup_entity`]; other
///   properties keep their name.
/// - The lookup's navigation property of the same name (`<name>`, sent with `$expand`) never
///   replaces that id: a `$ref` object (`{"@odata.id": ".../contacts(<id>)"}`) gives the id
///   when `_<name>_value` is absent, and an expanded record is left out.
/// - `<name>@OData.Community.Display.V1.FormattedValue` goes to [`Field::formatted`]; an
///   annotation finds its property whether it comes before or after it, and makes a null field
///   of its own when the property is absent. `@odata.etag` is the record's
///   [`etag`](Record::etag); `@odata.*` and other annotations are skipped.
/// - Numbers keep every digit ([`Number`]); dates stay the strings Dataverse sent (`2024-04-10`
///   for DateOnly columns, UTC `2024-06-12T14:13:25Z` for the others); arrays and objects are
///   kept as their JSON text ([`Value::Json`]).
/// - A record without its primary id is an error naming its position, never dropped; so is a
///   `$ref` response (links, not records).
///
/// Use it on pages fetched some other way, in tests, or in benchmarks.
///
/// [`Field::lookup_entity`]: crate::Field::lookup_entity
/// [`Field::formatted`]: crate::Field::formatted
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    metadata: Arc<EntityMetadata>,
    /// Every attribute's logical name, shared by the pages' column lists, and whether the
    /// attribute is a lookup.
    attributes: NameMap<Arc<str>, bool>,
}

/// A decoded collection page.
#[derive(Debug)]
pub(crate) struct DecodedPage {
    pub changes: Vec<RecordChange>,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
    pub counts: PageCounts,
}

impl RecordDecoder {
    /// A decoder for records of the table `metadata` describes.
    pub fn new(metadata: impl Into<Arc<EntityMetadata>>) -> Self {
        let metadata = metadata.into();
        let attributes = metadata
            .attributes()
            .iter()
            .map(|a| (a.logical_name().into(), a.attribute_type().is_lookup()))
            .collect();
        Self {
            metadata,
            attributes,
        }
    }

    /// The table's metadata.
    pub fn metadata(&self) -> &Arc<EntityMetadata> {
        &self.metadata
    }

    /// Decodes a single-record response (`GET accounts(<id>)`).
    pub fn decode_record(&self, json: &[u8]) -> Result<Record> {
        let text = utf8(json)
            .map_err(|e| Error::decode(format!("the record could not be decoded: {e}")))?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let mut reader = PageReader::new(self);
        let row = RowSeed {
            reader: &mut reader,
            index: 0,
        }
        .deserialize(&mut deserializer)
        .and_then(|row| deserializer.end().map(|()| row))
        .map_err(|e| Error::decode(format!("the record could not be decoded: {e}")))?;
        match row.into_change(&Arc::new(reader.columns)) {
            RecordChange::Upsert(record) => Ok(record),
            RecordChange::Delete { .. } => Err(Error::decode(
                "the response is a deleted-record marker, not a record",
            )),
        }
    }

    /// Decodes a collection response (`{"value":[...]}`, a page or a delta page) into its
    /// changes: records, and deletes for `$deletedEntity` rows.
    pub fn decode_changes(&self, json: &[u8]) -> Result<Vec<RecordChange>> {
        self.decode_page(json)
            .map(|page| page.changes)
            .map_err(|e| Error::decode(format!("the collection could not be decoded: {e}")))
    }

    /// Decodes a collection page with its links. The error message names the record at fault.
    pub(crate) fn decode_page(&self, json: &[u8]) -> std::result::Result<DecodedPage, String> {
        let mut deserializer = serde_json::Deserializer::from_str(utf8(json)?);
        let page = PageSeed { decoder: self }
            .deserialize(&mut deserializer)
            .and_then(|page| deserializer.end().map(|()| page))
            .map_err(|e| e.to_string())?;
        Ok(page)
    }

    /// What property `key` stands for, its column added to `columns` when new.
    fn work_out(&self, key: &str, columns: &mut Columns) -> Property {
        match key.split_once('@') {
            None if self.attributes.get(key) == Some(&true) => {
                Property::Navigation(self.column(key, columns))
            }
            None => Property::Value(self.column(key, columns)),
            Some(("", "odata.context")) => Property::Context,
            Some(("", "odata.etag")) => Property::Etag,
            Some(("", "removed" | "odata.removed")) => Property::Removed,
            Some(("", "odata.id")) => Property::Reference,
            Some(("", _)) => Property::Skipped,
            Some((property, FORMATTED_VALUE_ANNOTATION)) => {
                Property::Formatted(self.column(property, columns))
            }
            Some((property, LOOKUP_TABLE_ANNOTATION)) => {
                Property::LookupTable(self.column(property, columns))
            }
            Some(_) => Property::Skipped,
        }
    }

    /// The slot of the column property `name` fills (`<x>` for `_<x>_value` when `<x>` is a
    /// lookup), added to `columns` when new; attribute names are shared, not copied.
    fn column(&self, name: &str, columns: &mut Columns) -> usize {
        let lookup = lookup_of_value_property(name)
            .filter(|logical| self.attributes.get(*logical) == Some(&true));
        let name = lookup.unwrap_or(name);
        if let Some(slot) = columns.slot(name) {
            return slot;
        }
        let shared = match self.attributes.get_key_value(name) {
            Some((shared, _)) => shared.clone(),
            None => name.into(),
        };
        columns.add(shared)
    }
}

/// The body as text, checked in one pass (serde_json then checks no string again).
fn utf8(json: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(json).map_err(|e| format!("the body is not UTF-8 text: {e}"))
}

/// What the rows of a page share while it is read: its column list, its property keys, and the
/// row being read.
struct PageReader<'a> {
    decoder: &'a RecordDecoder,
    columns: Columns,
    keys: PropertyKeys,
    row: RowBuilder,
}

impl<'a> PageReader<'a> {
    fn new(decoder: &'a RecordDecoder) -> Self {
        Self {
            decoder,
            columns: Columns::default(),
            keys: PropertyKeys::default(),
            row: RowBuilder::default(),
        }
    }

    /// What the property `key`, sent at `position` of its row, stands for.
    fn property(&mut self, position: usize, key: &str) -> Property {
        let (decoder, columns) = (self.decoder, &mut self.columns);
        self.keys
            .get(position, key, |key| decoder.work_out(key, columns))
    }

    /// The row read; the error names its `position` (from 1).
    fn finish_row(&mut self, position: usize) -> std::result::Result<DecodedRow, String> {
        let primary = self.decoder.metadata.primary_id_attribute();
        self.row.finish(&self.columns, primary, position)
    }
}

/// A map key, borrowed from the body unless it holds escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a property name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The page object: `value`, `@odata.nextLink`, `@odata.deltaLink` and the counts.
struct PageSeed<'a> {
    decoder: &'a RecordDecoder,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = DecodedPage;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = DecodedPage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a collection object with a `value` array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rows = None;
        let mut next_link = None;
        let mut delta_link = None;
        let mut counts = PageCounts::default();
        let mut reader = PageReader::new(self.decoder);
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "value" => {
                    rows = Some(map.next_value_seed(RowsSeed {
                        reader: &mut reader,
                    })?);
                }
                "@odata.nextLink" => next_link = Some(map.next_value::<String>()?),
                "@odata.deltaLink" => delta_link = Some(map.next_value::<String>()?),
                "@odata.count" => counts.count = Some(map.next_value()?),
                "@Microsoft.Dynamics.CRM.totalrecordcount" => {
                    counts.total_record_count = Some(map.next_value()?);
                }
                "@Microsoft.Dynamics.CRM.totalrecordcountlimitexceeded" => {
                    counts.total_record_count_limit_exceeded = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let rows: Vec<DecodedRow> = rows.ok_or_else(|| {
            de::Error::custom("the response has no `value` array (it is not a collection)")
        })?;
        let columns = Arc::new(reader.columns);
        let changes = rows
            .into_iter()
            .map(|row| row.into_change(&columns))
            .collect();
        Ok(DecodedPage {
            changes,
            next_link,
            delta_link,
            counts,
        })
    }
}

/// The `value` array.
struct RowsSeed<'r, 'a> {
    reader: &'r mut PageReader<'a>,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = Vec<DecodedRow>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = Vec<DecodedRow>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element_seed(RowSeed {
            reader: &mut *self.reader,
            index: rows.len(),
        })? {
            rows.push(row);
        }
        Ok(rows)
    }
}

/// One row: a record, or a deleted-record marker.
struct RowSeed<'r, 'a> {
    reader: &'r mut PageReader<'a>,
    /// The row's position in its page, from 0.
    index: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = DecodedRow;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = DecodedRow;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} as an object", self.index + 1)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let reader = self.reader;
        let position = self.index + 1;
        reader.row.start(reader.columns.len());
        let mut at = 0;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let property = reader.property(at, &key);
            at += 1;
            let in_column = |e: String| {
                de::Error::custom(format_args!("record {position}, column `{key}`: {e}"))
            };
            read_property(&mut map, property, &mut reader.row, in_column)?;
        }
        reader.finish_row(position).map_err(de::Error::custom)
    }
}

/// Reads the value of a property that stands for `property` into `row`; `in_column` makes the
/// error for a value the column cannot hold.
fn read_property<'de, A: MapAccess<'de>>(
    map: &mut A,
    property: Property,
    row: &mut RowBuilder,
    in_column: impl Fn(String) -> A::Error,
) -> Result<(), A::Error> {
    match property {
        Property::Value(slot) => {
            let raw: &'de RawValue = map.next_value()?;
            row.set(slot, value_from_raw(raw.get()).map_err(in_column)?);
        }
        Property::Navigation(slot) => {
            let raw: &'de RawValue = map.next_value()?;
            read_navigation(raw.get(), slot, row).map_err(in_column)?;
        }
        Property::Formatted(slot) => {
            if let Some(text) = map.next_value()? {
                row.annotate(slot, Annotation::Formatted(text));
            }
        }
        Property::LookupTable(slot) => {
            if let Some(table) = map.next_value()? {
                row.annotate(slot, Annotation::LookupTable(table));
            }
        }
        Property::Context => {
            let Key(context) = map.next_value()?;
            if context.ends_with("$deletedEntity") {
                row.mark_deleted();
            }
        }
        Property::Etag => row.set_etag(map.next_value()?),
        Property::Removed => {
            map.next_value::<IgnoredAny>()?;
            row.mark_deleted();
        }
        Property::Reference => {
            map.next_value::<IgnoredAny>()?;
            row.mark_reference();
        }
        Property::Skipped => {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(())
}

/// Reads `raw`, sent under the name of the lookup at `slot`: an object (expanded or `$ref`) or
/// null is its navigation property, anything else the column's value.
fn read_navigation(
    raw: &str,
    slot: usize,
    row: &mut RowBuilder,
) -> std::result::Result<(), String> {
    if matches!(raw.as_bytes().first(), Some(b'{' | b'n')) {
        if let Some(id) = navigation_id(raw)? {
            row.navigate(slot, id);
        }
    } else {
        row.set(slot, value_from_raw(raw)?);
    }
    Ok(())
}

/// The id a lookup's navigation property gives: null, the id a `$ref` object
/// (`{"@odata.id": ".../contacts(<id>)"}`) points at, or `None` for an expanded record, which
/// is left out.
fn navigation_id(raw: &str) -> std::result::Result<Option<Value>, String> {
    #[derive(serde::Deserialize)]
    struct Reference {
        #[serde(rename = "@odata.id")]
        link: Option<String>,
    }
    if raw.starts_with('n') {
        return Ok(Some(Value::Null));
    }
    let reference: Reference = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let Some(link) = reference.link else {
        return Ok(None);
    };
    link.strip_suffix(')')
        .and_then(|rest| rest.rsplit_once('('))
        .map(|(_, id)| id)
        .filter(|id| !id.is_empty() && !id.contains(['=', '\'', '/', '(']))
        .map(|id| Some(Value::String(id.to_owned())))
        .ok_or_else(|| {
            "its `@odata.id` does not end with the record's id in parentheses (`.../contacts(<id>)`)"
                .to_owned()
        })
}

/// A property value from its raw JSON text.
fn value_from_raw(raw: &str) -> std::result::Result<Value, String> {
    match raw.as_bytes().first() {
        Some(b'n') => Ok(Value::Null),
        Some(b't') => Ok(Value::Bool(true)),
        Some(b'f') => Ok(Value::Bool(false)),
        Some(b'"') => {
            if raw.as_bytes().contains(&b'\\') {
                serde_json::from_str::<String>(raw)
                    .map(Value::String)
                    .map_err(|e| e.to_string())
            } else {
                Ok(Value::String(raw[1..raw.len() - 1].to_owned()))
            }
        }
        Some(b'[' | b'{') => Ok(Value::Json(raw.to_owned())),
        _ => Number::parse(raw)
            .map(Value::Number)
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_keep_their_meaning() {
        assert_eq!(value_from_raw("null").unwrap(), Value::Null);
        assert_eq!(value_from_raw("true").unwrap(), Value::Bool(true));
        assert_eq!(
            value_from_raw("\"O'Brien\"").unwrap(),
            Value::String("O'Brien".into())
        );
        assert_eq!(
            value_from_raw(r#""a\n\"b\" \u00e9""#).unwrap(),
            Value::String("a\n\"b\" é".into())
        );
        assert_eq!(
            value_from_raw("922337203685477.5807").unwrap(),
            Value::Number(Number::parse("922337203685477.5807").unwrap())
        );
        assert_eq!(
            value_from_raw("[1, 2]").unwrap(),
            Value::Json("[1, 2]".into())
        );
    }

    use crate::value::Field;

    fn decoder() -> RecordDecoder {
        use crate::metadata::{AttributeMetadata, AttributeType};
        RecordDecoder::new(
            EntityMetadata::new("contact", "contacts", "contactid")
                .with_attribute(AttributeMetadata::new(
                    "contactid",
                    AttributeType::Uniqueidentifier,
                ))
                .with_attribute(AttributeMetadata::new(
                    "parentcustomerid",
                    AttributeType::Customer,
                )),
        )
    }

    fn field(value: Value, formatted: Option<&str>, table: Option<&str>) -> Field {
        Field {
            value,
            formatted: formatted.map(str::to_owned),
            lookup_entity: table.map(str::to_owned),
        }
    }

    fn text(value: &str) -> Value {
        Value::String(value.to_owned())
    }

    #[test]
    fn rows_of_one_page_may_differ_in_keys_order_and_annotations() {
        let body = r#"{"value":[
            {"contactid":"1","age":30,"_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":"account","_parentcustomerid_value":"a1"},
            {"age":31,"contactid":"2","_parentcustomerid_value":"a2","_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":"contact","nickname":"Bo"},
            {"contactid":"3","statecode@OData.Community.Display.V1.FormattedValue":"Active","_other_value":"x"}
        ]}"#;
        let changes = decoder().decode_changes(body.as_bytes()).unwrap();
        let records: Vec<&Record> = changes.iter().filter_map(RecordChange::record).collect();

        let mut first = Record::new("1");
        first.insert("contactid", Field::new(text("1")));
        first.insert(
            "age",
            Field::new(Value::Number(Number::parse("30").unwrap())),
        );
        first.insert("parentcustomerid", field(text("a1"), None, Some("account")));
        let mut second = Record::new("2");
        second.insert("contactid", Field::new(text("2")));
        second.insert(
            "age",
            Field::new(Value::Number(Number::parse("31").unwrap())),
        );
        second.insert("parentcustomerid", field(text("a2"), None, Some("contact")));
        second.insert("nickname", Field::new(text("Bo")));
        let mut third = Record::new("3");
        third.insert("contactid", Field::new(text("3")));
        third.insert("statecode", field(Value::Null, Some("Active"), None));
        // Not a lookup of the table: the property keeps its name.
        third.insert("_other_value", Field::new(text("x")));
        assert_eq!(records, [&first, &second, &third]);
        assert_eq!(
            records[1]
                .fields()
                .map(|(name, _)| name)
                .collect::<Vec<_>>(),
            ["age", "contactid", "nickname", "parentcustomerid"]
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_is_a_decode_error() {
        let error = decoder()
            .decode_changes(b"{\"value\":[{\"contactid\":\"\xff\"}]}")
            .unwrap_err();
        assert!(error.to_string().contains("not UTF-8"), "{error}");
        assert!(
            decoder()
                .decode_record(b"{\"contactid\":\"\xff\"}")
                .is_err()
        );
    }
}
