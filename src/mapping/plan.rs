//! The compiled form of a mapping set: what validation produces and conversion runs.
//!
//! Every name is resolved here once: each step knows its source column, its target field and
//! type, its default, whether it must hold a value, and where it sits in the target record, so
//! converting a record never searches by name.

use super::WriteMode;
use super::derived::MultipleMatches;
use super::schema::{TargetField, TargetFieldType, TargetValue};
use crate::metadata::{AttributeMetadata, AttributeType, OptionLabel};
use crate::value::{Columns, Field, Record};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

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
    /// The column's position among the plan's distinct columns (set by [`ValidatedMapping::new`]).
    pub(super) index: usize,
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
            index: 0,
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
#[derive(Debug)]
pub struct ValidatedMapping {
    pub(super) object: String,
    pub(super) mode: WriteMode,
    pub(super) identifiers: Vec<String>,
    /// For each identifier, the position of its step, which is its position in a converted
    /// record.
    pub(super) identifier_steps: Vec<usize>,
    pub(super) steps: Vec<Step>,
    /// The distinct columns the steps read, each at its [`SourceColumn::index`].
    columns: Vec<String>,
    /// Where the columns sit in the records of the last column list seen: the records of a
    /// page share one list, so a page looks its columns up once.
    binding: Mutex<Option<Arc<Binding>>>,
}

impl Clone for ValidatedMapping {
    fn clone(&self) -> Self {
        Self {
            object: self.object.clone(),
            mode: self.mode,
            identifiers: self.identifiers.clone(),
            identifier_steps: self.identifier_steps.clone(),
            steps: self.steps.clone(),
            columns: self.columns.clone(),
            binding: Mutex::new(None),
        }
    }
}

/// The slots of a plan's columns in one column list of records.
#[derive(Debug)]
pub(super) struct Binding {
    /// The list, kept so that it is not mistaken for a later one at the same address.
    list: Arc<Columns>,
    /// Its length when bound: a name added later gets a slot of its own.
    len: usize,
    /// By [`SourceColumn::index`]: the column's slot, `None` when the list lacks it.
    slots: Vec<Option<usize>>,
}

impl Binding {
    fn fits(&self, list: &Arc<Columns>) -> bool {
        Arc::ptr_eq(&self.list, list) && self.len == list.len()
    }

    /// The field of `column` in `record`, a record of the bound list.
    pub(super) fn field<'r>(&self, record: &'r Record, column: &SourceColumn) -> Option<&'r Field> {
        record.field_at(self.slots[column.index]?)
    }
}

impl ValidatedMapping {
    /// The plan of `steps`, whose columns are numbered and identifiers located once.
    pub(super) fn new(
        object: String,
        mode: WriteMode,
        identifiers: Vec<String>,
        mut steps: Vec<Step>,
    ) -> Self {
        let identifier_steps = identifiers
            .iter()
            .filter_map(|name| steps.iter().position(|s| *s.target == **name))
            .collect();
        let columns = number_columns(&mut steps);
        Self {
            object,
            mode,
            identifiers,
            identifier_steps,
            steps,
            columns,
            binding: Mutex::new(None),
        }
    }

    /// Where this plan's columns sit in `record`'s column list.
    pub(super) fn binding(&self, record: &Record) -> Arc<Binding> {
        let mut cached = self.binding.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(binding) = cached.as_ref().filter(|b| b.fits(record.columns())) {
            return Arc::clone(binding);
        }
        let list = Arc::clone(record.columns());
        let binding = Arc::new(Binding {
            len: list.len(),
            slots: self.columns.iter().map(|name| list.slot(name)).collect(),
            list,
        });
        *cached = Some(Arc::clone(&binding));
        binding
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
        self.columns.clone()
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
        self.steps.iter().flat_map(Step::columns)
    }
}

impl Step {
    /// The columns the step reads: its own, or its derived lookup's match columns.
    fn columns(&self) -> impl Iterator<Item = &SourceColumn> {
        let (own, criteria) = match &self.source {
            StepSource::Column(column) => (Some(column), &[][..]),
            StepSource::Derived { criteria, .. } => (None, criteria.as_slice()),
            StepSource::Constant(_) => (None, &[][..]),
        };
        own.into_iter().chain(criteria.iter().map(|(_, c)| c))
    }

    fn columns_mut(&mut self) -> impl Iterator<Item = &mut SourceColumn> {
        let (own, criteria) = match &mut self.source {
            StepSource::Column(column) => (Some(column), &mut [][..]),
            StepSource::Derived { criteria, .. } => (None, criteria.as_mut_slice()),
            StepSource::Constant(_) => (None, &mut [][..]),
        };
        own.into_iter().chain(criteria.iter_mut().map(|(_, c)| c))
    }
}

/// Numbers the distinct columns `steps` read, in mapping order, and returns their names.
fn number_columns(steps: &mut [Step]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut indices: HashMap<String, usize> = HashMap::new();
    for column in steps.iter_mut().flat_map(Step::columns_mut) {
        column.index = *indices.entry(column.name.clone()).or_insert_with(|| {
            names.push(column.name.clone());
            names.len() - 1
        });
    }
    names
}
