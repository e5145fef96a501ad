//! Validation: a [`MappingSet`] checked against the table's metadata and the target schema,
//! compiled into a [`ValidatedMapping`], or every violation at once.

use super::explain::did_you_mean;
use super::plan::{Requirement, Step, StepSource, ValidatedMapping};
use super::rules::{self, Problem};
use super::schema::{TargetField, TargetValue};
use super::violation::{MappingErrors, Violation, ViolationKind};
use super::{FieldMapping, MappingSet, WriteMode};
use crate::metadata::EntityMetadata;
use std::collections::{HashMap, HashSet};

impl MappingSet {
    /// Checks every mapping against the table's metadata and the target schema, and returns
    /// every violation at once, or the mapping ready to convert records.
    pub fn validate(&self, metadata: &EntityMetadata) -> Result<ValidatedMapping, MappingErrors> {
        let validation = Validation::new(self, metadata);
        let mut violations = validation.unknown_set_fields();
        let (steps, found) = validation.compile_mappings();
        violations.extend(found);
        violations.extend(validation.required_unmapped());
        violations.extend(validation.missing_identifier());
        violations.extend(validation.identifiers_unmapped());
        if !violations.is_empty() {
            return Err(MappingErrors {
                object: self.target.object.clone(),
                violations,
            });
        }
        Ok(ValidatedMapping::new(
            self.target.object.clone(),
            self.mode,
            self.identifiers.clone(),
            steps,
        ))
    }
}

/// One validation in progress: the set, the table, and the names suggestions are drawn from.
struct Validation<'a> {
    set: &'a MappingSet,
    metadata: &'a EntityMetadata,
    field_names: Vec<&'a str>,
    mapped: HashSet<&'a str>,
}

impl<'a> Validation<'a> {
    fn new(set: &'a MappingSet, metadata: &'a EntityMetadata) -> Self {
        Self {
            set,
            metadata,
            field_names: set.target.fields.keys().map(String::as_str).collect(),
            mapped: set.mappings.iter().map(|m| m.target.as_str()).collect(),
        }
    }

    /// `required` and `identifiers` entries that are not fields of the target.
    fn unknown_set_fields(&self) -> Vec<Violation> {
        let object = &self.set.target.object;
        let unknown = |names: &'a [String], key: &'a str, remedy: &'a str| {
            names
                .iter()
                .filter(|name| self.set.target.field(name).is_none())
                .map(move |name| {
                    set_violation(
                        name,
                        ViolationKind::UnknownTargetField,
                        format!(
                            "`{key}` names `{name}`, which is not a field of `{object}`{}; {remedy}",
                            did_you_mean(name, &self.field_names)
                        ),
                    )
                })
        };
        unknown(
            &self.set.target.required,
            "required",
            "add it to target.fields or remove it from required",
        )
        .chain(unknown(
            &self.set.identifiers,
            "identifiers",
            "name a field of target.fields",
        ))
        .collect()
    }

    /// Every mapping compiled into a step, or the violations it breaks.
    fn compile_mappings(&self) -> (Vec<Step>, Vec<Violation>) {
        let mut steps = Vec::with_capacity(self.set.mappings.len());
        let mut violations = Vec::new();
        let mut first_writers: HashMap<&str, usize> = HashMap::new();
        for (index, mapping) in self.set.mappings.iter().enumerate() {
            let first = *first_writers.entry(&mapping.target).or_insert(index);
            let earlier = (first != index).then_some(first);
            match self.compile(mapping, earlier) {
                Ok(step) => steps.extend(step),
                Err(problems) => violations.extend(
                    problems
                        .into_iter()
                        .map(|problem| placed(index, mapping, problem)),
                ),
            }
        }
        (steps, violations)
    }

    /// One mapping's step (none when its field is unknown), or every problem it has.
    fn compile(
        &self,
        mapping: &FieldMapping,
        earlier: Option<usize>,
    ) -> Result<Option<Step>, Vec<Problem>> {
        let field = self.set.target.field(&mapping.target);
        let mut problems: Vec<Problem> = rules::duplicate_target(mapping, earlier)
            .into_iter()
            .chain(rules::unknown_target(
                mapping,
                &self.set.target,
                &self.field_names,
            ))
            .collect();
        if let Some(problem) = rules::shape(mapping) {
            problems.push(problem);
            return Err(problems);
        }
        let source = self.source(mapping, field).unwrap_or_else(|found| {
            problems.extend(found);
            None
        });
        let default = rules::default_value(mapping, field).unwrap_or_else(|problem| {
            problems.push(problem);
            None
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(source
            .zip(field)
            .map(|(source, field)| self.step(mapping, *field, source, default)))
    }

    /// Where the mapping's value comes from: a column, a constant or a derived lookup.
    fn source(
        &self,
        mapping: &FieldMapping,
        field: Option<&TargetField>,
    ) -> Result<Option<StepSource>, Vec<Problem>> {
        if let Some(name) = &mapping.source {
            rules::source_column(mapping, name, field, self.metadata)
                .map(Some)
                .map_err(|problem| vec![problem])
        } else if let Some(constant) = &mapping.constant {
            rules::constant(constant, field).map_err(|problem| vec![problem])
        } else if let Some(lookup) = &mapping.lookup {
            rules::derived(lookup, field, self.metadata).map(Some)
        } else {
            Ok(None)
        }
    }

    fn step(
        &self,
        mapping: &FieldMapping,
        field: TargetField,
        source: StepSource,
        default: Option<TargetValue>,
    ) -> Step {
        Step {
            target: mapping.target.as_str().into(),
            field,
            source,
            default,
            requirement: Requirement::of(
                &mapping.target,
                &self.set.target.required,
                &self.set.identifiers,
                self.set.mode,
            ),
        }
    }

    /// Required fields no mapping writes (an unmapped identifier is reported as such instead).
    fn required_unmapped(&self) -> Vec<Violation> {
        let object = &self.set.target.object;
        self.set
            .target
            .required
            .iter()
            .filter(|name| self.set.target.field(name).is_some())
            .filter(|name| !self.mapped.contains(name.as_str()))
            .filter(|name| !self.set.identifiers.contains(name))
            .map(|name| {
                set_violation(
                    name,
                    ViolationKind::RequiredFieldUnmapped,
                    format!(
                        "`{name}` is required by `{object}` but no mapping writes it; add a mapping (a source, a constant or a lookup) with target `{name}`"
                    ),
                )
            })
            .collect()
    }

    /// `update` and `upsert` without identifiers.
    fn missing_identifier(&self) -> Option<Violation> {
        let mode = match self.set.mode {
            WriteMode::Insert => return None,
            WriteMode::Update => "update",
            WriteMode::Upsert => "upsert",
        };
        self.set.identifiers.is_empty().then(|| Violation {
            mapping: None,
            source: None,
            target: None,
            kind: ViolationKind::MissingIdentifier,
            message: format!(
                "mode `{mode}` needs identifiers to find the target record; list the identifying fields of `{}` in identifiers, or use mode insert",
                self.set.target.object
            ),
        })
    }

    /// Identifier fields no mapping writes.
    fn identifiers_unmapped(&self) -> Vec<Violation> {
        self.set
            .identifiers
            .iter()
            .filter(|name| self.set.target.field(name).is_some())
            .filter(|name| !self.mapped.contains(name.as_str()))
            .map(|name| {
                set_violation(
                    name,
                    ViolationKind::IdentifierUnmapped,
                    format!(
                        "`{name}` is an identifier but no mapping writes it; map the column that identifies the record (such as `{}`) to `{name}`",
                        self.metadata.primary_id_attribute()
                    ),
                )
            })
            .collect()
    }
}

/// A problem of the mapping at `index`, placed in the set.
fn placed(index: usize, mapping: &FieldMapping, problem: Problem) -> Violation {
    Violation {
        mapping: Some(index),
        source: problem.source,
        target: Some(mapping.target.clone()).filter(|t| !t.is_empty()),
        kind: problem.kind,
        message: problem.message,
    }
}

/// A violation of a rule of the whole set, about the field `target`.
fn set_violation(target: &str, kind: ViolationKind, message: String) -> Violation {
    Violation {
        mapping: None,
        source: None,
        target: Some(target.to_owned()),
        kind,
        message,
    }
}
