//! The compiled form of a mapping set: what validation produces and conversion runs.
//!
//! Every name is resolved here once: each step knows its source column, its target field and
//! type, its default, whether it must hold a value, and where it sits in the target record, so
//! converting a record never searches by name.

use super::WriteMode;
use super::derived::MultipleMatches;
use super::schema::{TargetField, TargetFieldType, TargetValue};
use crate::metadata::{AttributeMetadata, AttributeType, OptionLabel};
use std::collections::HashSet;
use std::sync::Arc;

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

    /// The target type a column of this kind converts to on its own (a derived lookup's
    /// match value).
    pub(super) fn natural_type(self) -> TargetFieldType {
        match self {
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
        }
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

impl SourceColumn {
    /// The column `attribute`, of `kind`, read as `read`.
    pub(super) fn new(attribute: &AttributeMetadata, kind: SourceKind, read: Read) -> Self {
        Self {
            name: attribute.logical_name().to_owned(),
            kind,
            read,
            options: attribute.options().to_vec(),
            targets: attribute.targets().to_vec(),
        }
    }
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

/// Why a step's field must not be left null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Requirement {
    /// The target schema requires the field.
    Required,
    /// The field identifies the record for an update or upsert.
    Identifier,
}

impl Requirement {
    /// Whether the field `target` of a mapping set must hold a value; an identifier counts
    /// only when the mode finds records by it.
    pub(super) fn of(
        target: &str,
        required: &[String],
        identifiers: &[String],
        mode: WriteMode,
    ) -> Option<Self> {
        let identifies = mode != WriteMode::Insert && identifiers.iter().any(|i| i == target);
        if identifies {
            Some(Requirement::Identifier)
        } else if required.iter().any(|r| r == target) {
            Some(Requirement::Required)
        } else {
            None
        }
    }
}

/// One validated mapping: the value of one target field.
#[derive(Debug, Clone)]
pub(super) struct Step {
    /// The target field's name, shared by every record the step fills.
    pub(super) target: Arc<str>,
    pub(super) field: TargetField,
    pub(super) source: StepSource,
    pub(super) default: Option<TargetValue>,
    pub(super) requirement: Option<Requirement>,
}

/// A mapping set that passed every check, ready to convert records.
#[derive(Debug, Clone)]
pub struct ValidatedMapping {
    pub(super) object: String,
    pub(super) mode: WriteMode,
    pub(super) identifiers: Vec<String>,
    /// For each identifier, the position of its step, which is its position in a converted
    /// record.
    pub(super) identifier_steps: Vec<usize>,
    pub(super) steps: Vec<Step>,
}

impl ValidatedMapping {
    /// The plan of `steps`, whose positions the identifiers are looked up in once.
    pub(super) fn new(
        object: String,
        mode: WriteMode,
        identifiers: Vec<String>,
        steps: Vec<Step>,
    ) -> Self {
        let identifier_steps = identifiers
            .iter()
            .filter_map(|name| steps.iter().position(|s| *s.target == **name))
            .collect();
        Self {
            object,
            mode,
            identifiers,
            identifier_steps,
            steps,
        }
    }

    /// The target object's name.
    pub fn target_object(&self) -> &str {
        &self.object
    }

    /// How records are written.
    pub fn mode(&self) -> WriteMode {
        self.mode
    }

    /// The identifier fields.
    pub fn identifiers(&self) -> &[String] {
        &self.identifiers
    }

    /// The logical names of the columns to `$select`, each once, in mapping order; lookups by
    /// logical name (`parentcustomerid`), not as `_parentcustomerid_value`. The primary id is
    /// included only when mapped (Dataverse returns it anyway).
    pub fn source_columns(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.read_columns()
            .filter(|column| seen.insert(column.name.as_str()))
            .map(|column| column.name.clone())
            .collect()
    }

    /// Whether a mapping reads labels, so the request must ask for
    /// `OData.Community.Display.V1.FormattedValue` annotations.
    pub fn needs_formatted_values(&self) -> bool {
        self.read_columns().any(|c| c.read == Read::Label)
    }

    /// Whether a mapping reads the table a lookup points at, so the request must ask for
    /// `Microsoft.Dynamics.CRM.lookuplogicalname` annotations.
    pub fn needs_lookup_annotations(&self) -> bool {
        self.read_columns().any(|c| c.read == Read::LookupTable)
    }

    /// Every column a step reads, derived lookups' match columns included, in mapping order.
    fn read_columns(&self) -> impl Iterator<Item = &SourceColumn> {
        self.steps.iter().flat_map(|step| {
            let (own, criteria) = match &step.source {
                StepSource::Column(column) => (Some(column), &[][..]),
                StepSource::Derived { criteria, .. } => (None, criteria.as_slice()),
                StepSource::Constant(_) => (None, &[][..]),
            };
            own.into_iter().chain(criteria.iter().map(|(_, c)| c))
        })
    }
}
