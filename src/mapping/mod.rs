// The module docs (job-file keys, the compatibility table, the Customer id-only rule) live in
// `mapping.md`; the module is private, so they are rendered on `MappingSet` as well.
#![doc = include_str!("mapping.md")]

mod convert;
mod derived;
mod explain;
mod plan;
mod rules;
mod schema;
mod validate;
mod values;
mod violation;

pub use convert::RecordFailure;
pub use convert::RecordFailureKind;
pub use derived::{DerivedLookup, MAX_MATCH_FIELDS, MultipleMatches, TargetLookup};
pub use plan::ValidatedMapping;
pub use schema::{Literal, TargetField, TargetFieldType, TargetRecord, TargetSchema, TargetValue};
pub use violation::{MappingErrors, Violation, ViolationKind};

use serde::{Deserialize, Deserializer, Serialize};

/// How the job writes records to the target object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Create every record.
    Insert,
    /// Update existing records found by the identifiers.
    Update,
    /// Update the record found by the identifiers, or create it.
    Upsert,
}

/// One rule filling one target field: from a source column, a constant, or a derived lookup.
///
/// See [`MappingSet`] for the keys and the compatibility table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    /// The target field written.
    pub target: String,
    /// The source column's logical name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Write the label (formatted value) of a choice, state, status, yes/no or multi-select
    /// column instead of its value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub label: bool,
    /// Write the table a lookup points at (`account`) instead of its id.
    #[serde(default, skip_serializing_if = "is_false")]
    pub lookup_table: bool,
    /// A value written to every record (`null` included).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub constant: Option<Literal>,
    /// The value written when the source gives null.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Literal>,
    /// A derived mapping: the id of another target object's record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<DerivedLookup>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A key that is present is `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Literal>, D::Error> {
    Literal::deserialize(deserializer).map(Some)
}

impl FieldMapping {
    /// Maps the column `source` to the field `target`.
    pub fn source(source: impl Into<String>, target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            source: Some(source.into()),
            ..Self::default()
        }
    }

    /// Writes `value` to the field `target` in every record.
    pub fn constant(value: Literal, target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            constant: Some(value),
            ..Self::default()
        }
    }

    /// Fills the field `target` with the id found by `lookup`.
    pub fn derived(lookup: DerivedLookup, target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            lookup: Some(lookup),
            ..Self::default()
        }
    }

    /// Writes the column's label instead of its value.
    pub fn with_label(mut self) -> Self {
        self.label = true;
        self
    }

    /// Writes the table a lookup points at instead of its id.
    pub fn with_lookup_table(mut self) -> Self {
        self.lookup_table = true;
        self
    }

    /// Writes `value` when the source gives null.
    pub fn with_default(mut self, value: Literal) -> Self {
        self.default = Some(value);
        self
    }
}

/// Everything a job needs to write one Dynamics table into one target object.
///
/// Designed to be `#[serde(flatten)]`ed into a job definition: its keys are `target`, `mode`,
/// `identifiers` and `mappings`.
///
#[doc = include_str!("mapping.md")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingSet {
    /// The target object.
    pub target: TargetSchema,
    /// How records are written.
    pub mode: WriteMode,
    /// The target fields that identify a record (for `update`, `upsert` and deletes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<String>,
    /// One rule per target field.
    pub mappings: Vec<FieldMapping>,
}

impl MappingSet {
    /// Writes into `target` in `mode`, with no identifiers and no mappings yet.
    pub fn new(target: TargetSchema, mode: WriteMode) -> Self {
        Self {
            target,
            mode,
            identifiers: Vec::new(),
            mappings: Vec::new(),
        }
    }

    /// Adds a target field that identifies a record.
    pub fn with_identifier(mut self, field: impl Into<String>) -> Self {
        self.identifiers.push(field.into());
        self
    }

    /// Adds a rule filling one target field.
    pub fn with_mapping(mut self, mapping: FieldMapping) -> Self {
        self.mappings.push(mapping);
        self
    }
}
