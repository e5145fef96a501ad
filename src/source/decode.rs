//! Web API JSON to records, without an intermediate JSON tree and without touching `f64`.
//!
//! The body is walked once with serde: every property value is borrowed as a
//! [`RawValue`](serde_json::value::RawValue) slice of the body, numbers are kept as their exact
//! text ([`Number::parse`]), strings without escapes are copied straight out of the body, and
//! annotations are attached to their property as they come.

use super::page::{PageCounts, RecordChange};
use crate::client::{FORMATTED_VALUE_ANNOTATION, LOOKUP_TABLE_ANNOTATION};
use crate::error::{Error, Result};
use crate::metadata::EntityMetadata;
use crate::value::{Field, Number, Record, Value};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
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
/// - `<name>@OData.Community.Display.V1.FormattedValue` goes to [`Field::formatted`];
///   `@odata.*` and other annotations are skipped.
/// - Numbers keep every digit ([`Number`]); dates stay the strings Dataverse sent (`2024-04-10`
///   for DateOnly columns, UTC `2024-06-12T14:13:25Z` for the others).
/// - A record without its primary id is an error naming its position, never dropped; so is a
///   `$ref` response (links, not records).
///
/// Use it on pages fetched some other way, in tests, or in benchmarks.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    metadata: Arc<EntityMetadata>,
    /// `_<name>_value` to `<name>` for every lookup column.
    lookups: HashMap<String, String>,
    /// `<name>` of every lookup column: its navigation property when expanded.
    navigations: HashSet<String>,
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
        let navigations: HashSet<String> = metadata
            .attributes()
            .iter()
            .filter(|a| a.attribute_type().is_lookup())
            .map(|a| a.logical_name().to_owned())
            .collect();
        let lookups = navigations
            .iter()
            .map(|name| (format!("_{name}_value"), name.clone()))
            .collect();
        Self {
            metadata,
            lookups,
            navigations,
        }
    }

    /// The table's metadata.
    pub fn metadata(&self) -> &Arc<EntityMetadata> {
        &self.metadata
    }

    /// Decodes a single-record response (`GET accounts(<id>)`).
    pub fn decode_record(&self, json: &[u8]) -> Result<Record> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let change = RowSeed {
            decoder: self,
            index: 0,
        }
        .deserialize(&mut deserializer)
        .and_then(|change| deserializer.end().map(|()| change))
        .map_err(|e| Error::decode(format!("the record could not be decoded: {e}")))?;
        match change {
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
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let page = PageSeed { decoder: self }
            .deserialize(&mut deserializer)
            .and_then(|page| deserializer.end().map(|()| page))
            .map_err(|e| e.to_string())?;
        Ok(page)
    }

    /// The field name of property `name`: `<x>` for `_<x>_value` when `<x>` is a lookup.
    fn field_name<'de>(&self, name: Cow<'de, str>) -> Cow<'de, str> {
        if name.starts_with('_') {
            if let Some(logical) = self.lookups.get(name.as_ref()) {
                return Cow::Owned(logical.clone());
            }
        }
        name
    }

    /// Whether property `name` holding `raw` is the navigation property of a lookup: an
    /// object (expanded or `$ref`) or null under the lookup's logical name.
    fn is_navigation(&self, name: &str, raw: &str) -> bool {
        matches!(raw.as_bytes().first(), Some(b'{' | b'n')) && self.navigations.contains(name)
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
        let mut changes = None;
        let mut next_link = None;
        let mut delta_link = None;
        let mut counts = PageCounts::default();
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "value" => {
                    changes = Some(map.next_value_seed(RowsSeed {
                        decoder: self.decoder,
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
        let changes = changes.ok_or_else(|| {
            de::Error::custom("the response has no `value` array (it is not a collection)")
        })?;
        Ok(DecodedPage {
            changes,
            next_link,
            delta_link,
            counts,
        })
    }
}

/// The `value` array.
struct RowsSeed<'a> {
    decoder: &'a RecordDecoder,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Vec<RecordChange>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Vec<RecordChange>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut changes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(change) = seq.next_element_seed(RowSeed {
            decoder: self.decoder,
            index: changes.len(),
        })? {
            changes.push(change);
        }
        Ok(changes)
    }
}

/// One row: a record, or a deleted-record marker.
struct RowSeed<'a> {
    decoder: &'a RecordDecoder,
    /// The row's position in its page, from 0.
    index: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = RecordChange;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// An annotation this crate keeps.
enum Annotation {
    Formatted(String),
    LookupTable(String),
}

impl Annotation {
    fn apply(self, field: &mut Field) {
        match self {
            Annotation::Formatted(text) => field.formatted = Some(text),
            Annotation::LookupTable(table) => field.lookup_entity = Some(table),
        }
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = RecordChange;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} as an object", self.index + 1)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let decoder = self.decoder;
        let position = self.index + 1;
        let mut row = Row::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.find('@') {
                None => {
                    let raw: &'de RawValue = map.next_value()?;
                    let in_column = |e: String| {
                        de::Error::custom(format_args!("record {position}, column `{key}`: {e}"))
                    };
                    if decoder.is_navigation(&key, raw.get()) {
                        if let Some(id) = navigation_id(raw.get()).map_err(in_column)? {
                            row.navigated.push((key, id));
                        }
                    } else {
                        let value = value_from_raw(raw.get()).map_err(in_column)?;
                        row.push(decoder.field_name(key), value);
                    }
                }
                Some(0) => match key.as_ref() {
                    "@odata.context" => {
                        let context: Cow<'de, str> = map.next_value::<Key<'de>>()?.0;
                        row.deleted |= context.ends_with("$deletedEntity");
                    }
                    "@odata.etag" => row.etag = map.next_value::<Option<String>>()?,
                    "@removed" | "@odata.removed" => {
                        map.next_value::<IgnoredAny>()?;
                        row.deleted = true;
                    }
                    "@odata.id" => {
                        map.next_value::<IgnoredAny>()?;
                        row.reference = true;
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                },
                Some(at) => {
                    let annotation = &key[at + 1..];
                    let kept = annotation == FORMATTED_VALUE_ANNOTATION
                        || annotation == LOOKUP_TABLE_ANNOTATION;
                    if !kept {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    let Some(text) = map.next_value::<Option<String>>()? else {
                        continue;
                    };
                    let annotation = if annotation == FORMATTED_VALUE_ANNOTATION {
                        Annotation::Formatted(text)
                    } else {
                        Annotation::LookupTable(text)
                    };
                    let property = match key {
                        Cow::Borrowed(k) => Cow::Borrowed(&k[..at]),
                        Cow::Owned(ref k) => Cow::Owned(k[..at].to_owned()),
                    };
                    row.pending.push((decoder.field_name(property), annotation));
                }
            }
        }
        row.into_change(&decoder.metadata, position)
            .map_err(de::Error::custom)
    }
}

/// What one row's properties have given so far.
#[derive(Default)]
struct Row<'de> {
    fields: Vec<(Cow<'de, str>, Field)>,
    /// Annotations whose property has not been seen yet (Dataverse sends them first).
    pending: Vec<(Cow<'de, str>, Annotation)>,
    /// Lookup ids given by navigation properties, used where `_<name>_value` is absent.
    navigated: Vec<(Cow<'de, str>, Value)>,
    /// A `$deletedEntity` context or an `@removed` marker was seen.
    deleted: bool,
    /// An `@odata.id` was seen.
    reference: bool,
    /// The row's version (`@odata.etag`).
    etag: Option<String>,
}

impl<'de> Row<'de> {
    /// Adds the field `name`, with the annotations that came before it.
    fn push(&mut self, name: Cow<'de, str>, value: Value) {
        let mut field = Field::new(value);
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].0 == name {
                self.pending.swap_remove(i).1.apply(&mut field);
            } else {
                i += 1;
            }
        }
        self.fields.push((name, field));
    }

    /// Adds the ids of navigation properties where `_<name>_value` was absent, then the
    /// annotations that came after their property (or without one).
    fn complete(&mut self) {
        for (name, id) in std::mem::take(&mut self.navigated) {
            if !self.fields.iter().any(|(n, _)| *n == name) {
                self.fields.push((name, Field::new(id)));
            }
        }
        for (name, annotation) in std::mem::take(&mut self.pending) {
            match self.fields.iter_mut().find(|(n, _)| *n == name) {
                Some((_, field)) => annotation.apply(field),
                None => {
                    let mut field = Field::new(Value::Null);
                    annotation.apply(&mut field);
                    self.fields.push((name, field));
                }
            }
        }
    }

    /// The record, or the delete, the row stands for.
    fn into_change(
        mut self,
        metadata: &EntityMetadata,
        position: usize,
    ) -> std::result::Result<RecordChange, String> {
        if self.reference && self.fields.is_empty() && self.navigated.is_empty() {
            return Err(format!(
                "record {position} is a reference (`@odata.id` only), not a record: the response answers a `$ref` request; request the records without `/$ref`"
            ));
        }
        self.complete();
        let primary = metadata.primary_id_attribute();
        let value_of = |name: &str| {
            self.fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, f)| &f.value)
        };
        if self.deleted {
            let id = value_of("id")
                .or_else(|| value_of(primary))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("record {position} is a deleted-record marker without an `id`")
                })?;
            return Ok(RecordChange::Delete { id: id.to_owned() });
        }
        let id = match value_of(primary) {
            Some(Value::String(id)) => id.clone(),
            Some(_) => {
                return Err(format!(
                    "record {position} has a primary id `{primary}` that is not a string"
                ));
            }
            None => return Err(format!("record {position} has no primary id `{primary}`")),
        };
        let mut record = Record::new(id);
        record.set_etag(self.etag);
        for (name, field) in self.fields {
            record.insert(name.into_owned(), field);
        }
        Ok(RecordChange::Upsert(record))
    }
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
}
