//! Running a compiled mapping on one record: each step's value, in step order, then the
//! fields that must hold a value.

use super::derived::{MultipleMatches, TargetLookup};
use super::plan::{Requirement, SourceColumn, Step, StepSource, ValidatedMapping};
use super::schema::{TargetRecord, TargetValue};
use super::values::{self, Reason};
use crate::error::{Error, ErrorKind};
use crate::value::Record;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Why one record could not be converted; the other records of the page go on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordFailure {
    /// The Dynamics record's primary id.
    pub record_id: String,
    /// The target field that could not be filled; for a record the sink refused, the field
    /// the sink named, or [`RecordFailure::WHOLE_RECORD`].
    pub field: String,
    /// The source column read, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What went wrong and what to do, in one sentence.
    pub reason: String,
    /// The kind of failure.
    pub kind: RecordFailureKind,
}

/// The kinds of [`RecordFailure`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordFailureKind {
    /// A value could not be converted (too long, out of range, malformed, wrong type).
    Conversion,
    /// A required field or an identifier got no value.
    Required,
    /// The host's [`TargetLookup`] failed, or none was given for a derived mapping.
    Lookup,
    /// A derived lookup matched several records and its policy is `fail`.
    MultipleMatches,
    /// The record sink refused the record.
    Write,
}

impl RecordFailure {
    /// The field of a record the sink refused without naming a field: `*`, the whole record.
    pub const WHOLE_RECORD: &'static str = "*";
}

impl fmt::Display for RecordFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "record {}, field `{}`: {}",
            self.record_id, self.field, self.reason
        )
    }
}

impl std::error::Error for RecordFailure {}

impl From<RecordFailure> for Error {
    fn from(failure: RecordFailure) -> Self {
        Error::new(
            ErrorKind::Mapping,
            format!(
                "record {} could not be converted (field `{}`)",
                failure.record_id, failure.field
            ),
        )
        .with_source(failure)
    }
}

impl ValidatedMapping {
    /// Converts one Dynamics record (keyed by logical name) into a target record.
    ///
    /// `lookup` serves derived mappings and may be `None` when there are none. A value that does
    /// not convert, a required field or (for `update`/`upsert`) an identifier left null, or a
    /// failed lookup fails this record only.
    pub async fn convert(
        &self,
        record: &Record,
        lookup: Option<&dyn TargetLookup>,
    ) -> Result<TargetRecord, RecordFailure> {
        let mut converted = TargetRecord::with_capacity(self.steps.len());
        for step in &self.steps {
            let value = StepRun { step, record }.value(lookup).await?;
            converted.push(step.target.clone(), value);
        }
        self.check_requirements(record, &converted)?;
        Ok(converted)
    }

    /// The first step whose field must hold a value and holds none, as a failure.
    fn check_requirements(
        &self,
        record: &Record,
        converted: &TargetRecord,
    ) -> Result<(), RecordFailure> {
        let values = converted.values();
        for (step, value) in self.steps.iter().zip(values) {
            if let (Some(requirement), true) = (step.requirement, value.is_null()) {
                return Err(StepRun { step, record }.unfilled(requirement));
            }
        }
        Ok(())
    }

    /// The identifier fields' values of a converted record, in `identifiers` order (missing
    /// ones as null), to find the target record for updates, upserts and deletes.
    pub fn identifier_key(&self, record: &TargetRecord) -> TargetRecord {
        let mut key = TargetRecord::with_capacity(self.identifiers.len());
        for (name, &position) in self.identifiers.iter().zip(&self.identifier_steps) {
            let value = match record.field_at(position) {
                Some((field, value)) if field == name => value.clone(),
                _ => record.get(name).cloned().unwrap_or(TargetValue::Null),
            };
            key.push(self.steps[position].target.clone(), value);
        }
        key
    }
}

/// One step run on one record.
struct StepRun<'a> {
    step: &'a Step,
    record: &'a Record,
}

impl StepRun<'_> {
    /// The step's value for the record, its default in place of null.
    async fn value(&self, lookup: Option<&dyn TargetLookup>) -> Result<TargetValue, RecordFailure> {
        let value = match &self.step.source {
            StepSource::Constant(value) => value.clone(),
            StepSource::Column(column) => self.column(column)?,
            StepSource::Derived {
                object,
                criteria,
                multiple,
            } => self.derived(object, criteria, *multiple, lookup).await?,
        };
        Ok(match (value, &self.step.default) {
            (TargetValue::Null, Some(default)) => default.clone(),
            (value, _) => value,
        })
    }

    /// The column's value converted to the step's field; null when absent or null.
    fn column(&self, column: &SourceColumn) -> Result<TargetValue, RecordFailure> {
        match self.record.get(&column.name) {
            Some(field) if !field.value.is_null() => {
                values::convert_column(column, field, &self.step.field)
                    .map_err(|reason| self.conversion(Some(column), reason))
            }
            _ => Ok(TargetValue::Null),
        }
    }

    /// The id of the `object` record whose match fields equal the criteria columns' values;
    /// null when a criteria column is empty or nothing matches.
    async fn derived(
        &self,
        object: &str,
        criteria: &[(String, SourceColumn)],
        multiple: MultipleMatches,
        lookup: Option<&dyn TargetLookup>,
    ) -> Result<TargetValue, RecordFailure> {
        let Some(values) = self.match_values(criteria)? else {
            return Ok(TargetValue::Null);
        };
        let lookup = lookup.ok_or_else(|| {
            self.fail(
                None,
                RecordFailureKind::Lookup,
                format!(
                    "the field is derived from `{object}` records but no TargetLookup was given to convert()"
                ),
            )
        })?;
        let ids = lookup.find_ids(object, &values).await.map_err(|e| {
            self.fail(
                None,
                RecordFailureKind::Lookup,
                format!("the lookup of `{object}` failed: {e}"),
            )
        })?;
        match (ids.as_slice(), multiple) {
            ([], _) => Ok(TargetValue::Null),
            ([id], _) | ([id, ..], MultipleMatches::Any) => {
                values::id_into(id.clone(), &self.step.field)
                    .map_err(|reason| self.conversion(None, reason))
            }
            (many, MultipleMatches::Fail) => {
                Err(self.multiple_matches(object, many.len(), &values))
            }
        }
    }

    /// The match fields' values, or `None` when a criteria column is empty (the others are
    /// still converted, so a malformed one fails the record).
    fn match_values(
        &self,
        criteria: &[(String, SourceColumn)],
    ) -> Result<Option<TargetRecord>, RecordFailure> {
        let mut values = TargetRecord::with_capacity(criteria.len());
        let mut complete = true;
        for (match_field, column) in criteria {
            match self.record.get(&column.name).map(|f| &f.value) {
                Some(value) if !value.is_null() => {
                    let converted = values::natural(column, value)
                        .map_err(|reason| self.conversion(Some(column), reason))?;
                    values.insert(match_field.clone(), converted);
                }
                _ => complete = false,
            }
        }
        Ok(complete.then_some(values))
    }

    fn multiple_matches(&self, object: &str, count: usize, values: &TargetRecord) -> RecordFailure {
        let how_many = if count > 2 {
            count.to_string()
        } else {
            "several".into()
        };
        self.fail(
            None,
            RecordFailureKind::MultipleMatches,
            format!(
                "{how_many} `{object}` records match {}; make the match fields unique or set \"multiple\": \"any\"",
                serde_json::to_string(values).unwrap_or_default()
            ),
        )
    }

    /// The failure of a field that must hold a value and holds none.
    fn unfilled(&self, requirement: Requirement) -> RecordFailure {
        let source = match &self.step.source {
            StepSource::Column(column) => Some(column.name.as_str()),
            _ => None,
        };
        let what = match requirement {
            Requirement::Identifier => "an identifier",
            Requirement::Required => "required",
        };
        let empty = source
            .map(|s| format!(" (`{s}` is empty)"))
            .unwrap_or_default();
        self.fail(
            source,
            RecordFailureKind::Required,
            format!(
                "`{}` is {what} but this record gives it no value{empty}; fill it in Dynamics or give the mapping a default",
                self.step.target
            ),
        )
    }

    fn conversion(&self, column: Option<&SourceColumn>, reason: Reason) -> RecordFailure {
        let source = column.map(|c| c.name.as_str());
        self.fail(source, RecordFailureKind::Conversion, reason)
    }

    fn fail(&self, source: Option<&str>, kind: RecordFailureKind, reason: String) -> RecordFailure {
        RecordFailure {
            record_id: self.record.id().to_owned(),
            field: self.step.target.to_string(),
            source: source.map(str::to_owned),
            reason,
            kind,
        }
    }
}
