//! What validation reports: every broken rule of a mapping set, at once.

use crate::error::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One broken rule of a mapping set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The index of the mapping in `mappings` (from 0), or `None` for a rule of the whole set
    /// (a required field left unmapped, a missing identifier).
    pub mapping: Option<usize>,
    /// The source column involved, if any.
    pub source: Option<String>,
    /// The target field involved, if any.
    pub target: Option<String>,
    /// Which rule is broken.
    pub kind: ViolationKind,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.mapping, &self.source, &self.target) {
            (Some(i), Some(source), Some(target)) => {
                write!(f, "mappings[{i}] (`{source}` -> `{target}`): ")?
            }
            (Some(i), None, Some(target)) => write!(f, "mappings[{i}] (-> `{target}`): ")?,
            (Some(i), _, None) => write!(f, "mappings[{i}]: ")?,
            (None, _, Some(target)) => write!(f, "target field `{target}`: ")?,
            (None, _, None) => {}
        }
        f.write_str(&self.message)
    }
}

/// The rules a [`Violation`] can break.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// The mapping's keys do not make sense together (no source, two sources, `label` on a
    /// constant, ...).
    InvalidMapping,
    /// The target field is not in the target schema.
    UnknownTargetField,
    /// The source column does not exist in the table.
    UnknownAttribute,
    /// The source column is not valid for read.
    NotReadable,
    /// The source column is a generated companion (`AttributeOf`) of another column.
    GeneratedCompanion,
    /// The source column is of a kind the connector does not sync (file, image, calendar rules).
    UnsupportedAttribute,
    /// The mapping reaches a field of the record a lookup points at; lookups (Customer ones
    /// included) map by id only.
    LookupFieldAccess,
    /// The source column's type does not convert to the target field's type.
    IncompatibleTypes,
    /// A constant or default does not convert to the target field's type.
    InvalidConstant,
    /// Two mappings write one target field.
    DuplicateTarget,
    /// A required target field has no mapping.
    RequiredFieldUnmapped,
    /// An identifier field has no mapping.
    IdentifierUnmapped,
    /// `update` or `upsert` with no identifier.
    MissingIdentifier,
    /// A derived lookup is malformed (no object, no or too many match fields, wrong field type).
    InvalidLookup,
}

/// Every violation of a mapping set, found at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingErrors {
    pub(super) object: String,
    pub(super) violations: Vec<Violation>,
}

impl MappingErrors {
    /// The violations, in mapping order, then the rules of the whole set.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The violations, owned.
    pub fn into_violations(self) -> Vec<Violation> {
        self.violations
    }

    /// The target object the mapping writes.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// The violations carried by an [`Error`] made from [`MappingErrors`].
    pub fn from_error(error: &Error) -> Option<&MappingErrors> {
        std::error::Error::source(error)?.downcast_ref::<MappingErrors>()
    }
}

impl fmt::Display for MappingErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the mapping to `{}` has {} violation{}:",
            self.object,
            self.violations.len(),
            if self.violations.len() == 1 { "" } else { "s" }
        )?;
        for violation in &self.violations {
            write!(f, "\n- {violation}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MappingErrors {}

impl From<MappingErrors> for Error {
    fn from(errors: MappingErrors) -> Self {
        Error::new(
            ErrorKind::Mapping,
            format!(
                "the field mapping to `{}` is invalid ({} violation{}); fix each one listed by MappingErrors::from_error",
                errors.object,
                errors.violations.len(),
                if errors.violations.len() == 1 { "" } else { "s" }
            ),
        )
        .with_source(errors)
    }
}
