//! Web API JSON to records, without an intermediate JSON tree and without touching `f64`.
//!
//! The body is walked once with serde: every property value is borrowed as a
//! [`RawValue`](serde_json::value::RawValue) slice of the body, numbers are kept as their exact
//! text ([`Number::parse`]), strings without escapes are copied straight out of the body, and
//! annotations are attached to their property as they come.

use super::page::RecordChange;
use crate::client::{FORMATTED_VALUE_ANNOTATION, LOOKUP_TABLE_ANNOTATION};
use crate::error::{Error, Result};
use crate::metadata::EntityMetadata;
use crate::value::{Field, Number, Record, Value};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Decodes Dataverse Web API JSON (one record, or a collection page) into [`Record`]s the way
/// [`EntitySource`](crate::EntitySource) does.
///
/// - `_<name>_value` properties of lookup, Customer and Owner columns become the field
///   `<name>`, with the `lookuplogicalname` annotation in [`Field::lookup_entity`]; other
///   properties keep their name.
/// - `<name>@OData.Community.Display.V1.FormattedValue` goes to [`Field::formatted`];
///   `@odata.*` and other annotations are skipped.
/// - Numbers keep every digit ([`Number`]); dates stay the strings Dataverse sent (`2024-04-10`
///   for DateOnly columns, UTC `2024-06-12T14:13:25Z` for the others).
/// - A record without its primary id is an error naming its position, never dropped.
///
/// Use it on pages fetched some other way, in tests, or in benchmarks.
#[derive(Debug, Clone)]
pub struct RecordDecoder {
    metadata: Arc<EntityMetadata>,
    /// `_<name>_value` to `<name>` for every lookup column.
    lookups: HashMap<String, String>,
}

/// A decoded collection page.
#[derive(Debug)]
pub(crate) struct DecodedPage {
    pub changes: Vec<RecordChange>,
    pub next_link: Option<String>,
    pub delta_link: Option<String>,
}

impl RecordDecoder {
    /// A decoder for records of the table `metadata` describes.
    pub fn new(metadata: impl Into<Arc<EntityMetadata>>) -> Self {
        let metadata = metadata.into();
        let lookups = metadata
            .attributes()
            .iter()
            .filter(|a| a.attribute_type().is_lookup())
            .map(|a| {
                (
                    format!("_{}_value", a.logical_name()),
                    a.logical_name().to_owned(),
                )
            })
            .collect();
        Self { metadata, lookups }
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

/// The page object: `value`, `@odata.nextLink`, `@odata.deltaLink`.
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
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "value" => {
                    changes = Some(map.next_value_seed(RowsSeed {
                        decoder: self.decoder,
                    })?);
                }
                "@odata.nextLink" => next_link = Some(map.next_value::<String>()?),
                "@odata.deltaLink" => delta_link = Some(map.next_value::<String>()?),
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
        let mut fields: Vec<(Cow<'de, str>, Field)> = Vec::new();
        // Annotations whose property has not been seen yet (Dataverse sends them first).
        let mut pending: Vec<(Cow<'de, str>, Annotation)> = Vec::new();
        let mut deleted = false;
        let mut etag = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.find('@') {
                None => {
                    let raw: &'de RawValue = map.next_value()?;
                    let value = value_from_raw(raw.get()).map_err(|e| {
                        de::Error::custom(format_args!("record {position}, column `{key}`: {e}"))
                    })?;
                    let name = decoder.field_name(key);
                    let mut field = Field::new(value);
                    if !pending.is_empty() {
                        let mut i = 0;
                        while i < pending.len() {
                            if pending[i].0 == name {
                                pending.swap_remove(i).1.apply(&mut field);
                            } else {
                                i += 1;
                            }
                        }
                    }
                    fields.push((name, field));
                }
                Some(0) => match key.as_ref() {
                    "@odata.context" => {
                        let context: Cow<'de, str> = map.next_value::<Key<'de>>()?.0;
                        deleted |= context.ends_with("$deletedEntity");
                    }
                    "@odata.etag" => etag = map.next_value::<Option<String>>()?,
                    "@removed" | "@odata.removed" => {
                        map.next_value::<IgnoredAny>()?;
                        deleted = true;
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
                    pending.push((decoder.field_name(property), annotation));
                }
            }
        }
        // Annotations that came after their property, or without one.
        for (name, annotation) in pending {
            match fields.iter_mut().find(|(n, _)| *n == name) {
                Some((_, field)) => annotation.apply(field),
                None => {
                    let mut field = Field::new(Value::Null);
                    annotation.apply(&mut field);
                    fields.push((name, field));
                }
            }
        }
        if deleted {
            let primary = decoder.metadata.primary_id_attribute();
            let id = fields
                .iter()
                .find(|(n, _)| n == "id" || *n == primary)
                .and_then(|(_, f)| f.value.as_str())
                .ok_or_else(|| {
                    de::Error::custom(format_args!(
                        "record {position} is a deleted-record marker without an `id`"
                    ))
                })?;
            return Ok(RecordChange::Delete { id: id.to_owned() });
        }
        let primary = decoder.metadata.primary_id_attribute();
        let id = fields
            .iter()
            .find(|(n, _)| n == primary)
            .map(|(_, f)| &f.value)
            .ok_or_else(|| {
                de::Error::custom(format_args!(
                    "record {position} has no primary id `{primary}`"
                ))
            })?;
        let Value::String(id) = id else {
            return Err(de::Error::custom(format_args!(
                "record {position} has a primary id `{primary}` that is not a string"
            )));
        };
        let mut record = Record::new(id.clone());
        record.set_etag(etag);
        for (name, field) in fields {
            record.insert(name.into_owned(), field);
        }
        Ok(RecordChange::Upsert(record))
    }
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
