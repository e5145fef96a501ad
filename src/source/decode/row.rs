//! One row's fields, gathered by slot as its properties come.

use crate::source::page::RecordChange;
use crate::value::{Columns, Field, Record, Value};
use std::sync::Arc;

/// An annotation this crate keeps.
#[derive(Debug)]
pub(super) enum Annotation {
    /// `OData.Community.Display.V1.FormattedValue`.
    Formatted(String),
    /// `Microsoft.Dynamics.CRM.lookuplogicalname`.
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

/// A decoded row, waiting for the column list of its page.
#[derive(Debug)]
pub(super) enum DecodedRow {
    /// A record, its fields by slot.
    Upsert {
        id: String,
        etag: Option<String>,
        fields: Vec<Option<Field>>,
    },
    /// A deleted-record marker.
    Delete { id: String },
}

impl DecodedRow {
    /// The change the row stands for, its record naming its fields with `columns`.
    pub(super) fn into_change(self, columns: &Arc<Columns>) -> RecordChange {
        match self {
            DecodedRow::Upsert { id, etag, fields } => {
                RecordChange::Upsert(Record::from_slots(id, etag, columns.clone(), fields))
            }
            DecodedRow::Delete { id } => RecordChange::Delete { id },
        }
    }
}

/// The row being read; one per page, so its scratch lists are reused from row to row.
#[derive(Debug, Default)]
pub(super) struct RowBuilder {
    fields: Vec<Option<Field>>,
    /// Annotations whose property has not been seen yet (Dataverse sends them first).
    pending: Vec<(usize, Annotation)>,
    /// Lookup ids given by navigation properties, used where `_<name>_value` is absent.
    navigated: Vec<(usize, Value)>,
    /// A `$deletedEntity` context or an `@removed` marker was seen.
    deleted: bool,
    /// An `@odata.id` was seen.
    reference: bool,
    /// The row's version (`@odata.etag`).
    etag: Option<String>,
}

impl RowBuilder {
    /// Starts a row, with an empty slot for each of the `columns` the page has so far.
    pub(super) fn start(&mut self, columns: usize) {
        self.fields = Vec::with_capacity(columns);
        self.fields.resize_with(columns, || None);
        self.pending.clear();
        self.navigated.clear();
        self.deleted = false;
        self.reference = false;
        self.etag = None;
    }

    /// Sets the field at `slot`, with the annotations that came before it.
    pub(super) fn set(&mut self, slot: usize, value: Value) {
        let mut field = Field::new(value);
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].0 == slot {
                self.pending.swap_remove(i).1.apply(&mut field);
            } else {
                i += 1;
            }
        }
        *slot_in(&mut self.fields, slot) = Some(field);
    }

    /// Keeps an annotation of the field at `slot`, applied when the row ends.
    pub(super) fn annotate(&mut self, slot: usize, annotation: Annotation) {
        self.pending.push((slot, annotation));
    }

    /// Keeps the id a navigation property gave for the lookup at `slot`.
    pub(super) fn navigate(&mut self, slot: usize, id: Value) {
        self.navigated.push((slot, id));
    }

    /// Marks the row as a deleted-record marker.
    pub(super) fn mark_deleted(&mut self) {
        self.deleted = true;
    }

    /// Marks the row as a reference (`@odata.id`).
    pub(super) fn mark_reference(&mut self) {
        self.reference = true;
    }

    /// Sets the row's version.
    pub(super) fn set_etag(&mut self, etag: Option<String>) {
        self.etag = etag;
    }

    /// The row read, as a record or a delete; the error names its `position` (from 1).
    pub(super) fn finish(
        &mut self,
        columns: &Columns,
        primary: &str,
        position: usize,
    ) -> Result<DecodedRow, String> {
        if self.reference && self.fields.iter().all(Option::is_none) && self.navigated.is_empty() {
            return Err(format!(
                "record {position} is a reference (`@odata.id` only), not a record: the response answers a `$ref` request; request the records without `/$ref`"
            ));
        }
        self.complete();
        let value_of = |name: &str| Some(&self.fields.get(columns.slot(name)?)?.as_ref()?.value);
        if self.deleted {
            let id = value_of("id")
                .or_else(|| value_of(primary))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("record {position} is a deleted-record marker without an `id`")
                })?;
            return Ok(DecodedRow::Delete { id: id.to_owned() });
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
        Ok(DecodedRow::Upsert {
            id,
            etag: self.etag.take(),
            fields: std::mem::take(&mut self.fields),
        })
    }

    /// Adds the ids of navigation properties where `_<name>_value` was absent, then the
    /// annotations that came after their property (or without one).
    fn complete(&mut self) {
        for (slot, id) in self.navigated.drain(..) {
            let field = slot_in(&mut self.fields, slot);
            if field.is_none() {
                *field = Some(Field::new(id));
            }
        }
        for (slot, annotation) in self.pending.drain(..) {
            let field = slot_in(&mut self.fields, slot);
            annotation.apply(field.get_or_insert_with(|| Field::new(Value::Null)));
        }
    }
}

/// The field at `slot` of `fields`, the list grown to hold it.
fn slot_in(fields: &mut Vec<Option<Field>>, slot: usize) -> &mut Option<Field> {
    if slot >= fields.len() {
        fields.resize_with(slot + 1, || None);
    }
    &mut fields[slot]
}
