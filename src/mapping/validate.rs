//! Validation of a [`MappingSet`] against the table's metadata and the target schema.

use super::convert::{
    self, Read, RecordFailure, RecordFailureKind, SourceColumn, SourceKind, Step, StepSource,
    compatible_targets,
};
use super::derived::{MAX_MATCH_FIELDS, TargetLookup};
use super::schema::{TargetFieldType, TargetRecord, TargetValue};
use super::{FieldMapping, MappingSet, WriteMode};
use crate::error::{Error, ErrorKind};
use crate::metadata::{AttributeMetadata, AttributeType, EntityMetadata};
use crate::value::Record;
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
    object: String,
    violations: Vec<Violation>,
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

/// A mapping set that passed every check, ready to convert records.
#[derive(Debug, Clone)]
pub struct ValidatedMapping {
    object: String,
    mode: WriteMode,
    identifiers: Vec<String>,
    required: Vec<String>,
    steps: Vec<Step>,
}

impl ValidatedMapping {
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
        let mut columns: Vec<String> = Vec::new();
        let mut add = |name: &str| {
            if !columns.iter().any(|c| c == name) {
                columns.push(name.to_owned());
            }
        };
        for step in &self.steps {
            match &step.source {
                StepSource::Column(column) => add(&column.name),
                StepSource::Derived { criteria, .. } => {
                    for (_, column) in criteria {
                        add(&column.name);
                    }
                }
                StepSource::Constant(_) => {}
            }
        }
        columns
    }

    /// Whether a mapping reads labels, so the request must ask for
    /// `OData.Community.Display.V1.FormattedValue` annotations.
    pub fn needs_formatted_values(&self) -> bool {
        self.columns().any(|c| c.read == Read::Label)
    }

    /// Whether a mapping reads the table a lookup points at, so the request must ask for
    /// `Microsoft.Dynamics.CRM.lookuplogicalname` annotations.
    pub fn needs_lookup_annotations(&self) -> bool {
        self.columns().any(|c| c.read == Read::LookupTable)
    }

    fn columns(&self) -> impl Iterator<Item = &SourceColumn> {
        self.steps.iter().filter_map(|s| match &s.source {
            StepSource::Column(column) => Some(column),
            _ => None,
        })
    }

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
        let converted = convert::convert_record(&self.steps, record, lookup).await?;
        let needs_identifiers = self.mode != WriteMode::Insert;
        for step in &self.steps {
            let is_identifier = self.identifiers.contains(&step.target);
            let required = self.required.contains(&step.target);
            if !(required || (needs_identifiers && is_identifier)) {
                continue;
            }
            if converted.get(&step.target).is_none_or(TargetValue::is_null) {
                let source = match &step.source {
                    StepSource::Column(column) => Some(column.name.clone()),
                    _ => None,
                };
                let what = if is_identifier && needs_identifiers {
                    "an identifier"
                } else {
                    "required"
                };
                return Err(RecordFailure {
                    record_id: record.id().to_owned(),
                    field: step.target.clone(),
                    reason: format!(
                        "`{}` is {what} but this record gives it no value{}; fill it in Dynamics or give the mapping a default",
                        step.target,
                        source
                            .as_deref()
                            .map(|s| format!(" (`{s}` is empty)"))
                            .unwrap_or_default()
                    ),
                    source,
                    kind: RecordFailureKind::Required,
                });
            }
        }
        Ok(converted)
    }

    /// The identifier fields' values of a converted record, in `identifiers` order (missing
    /// ones as null), to find the target record for updates, upserts and deletes.
    pub fn identifier_key(&self, record: &TargetRecord) -> TargetRecord {
        let mut key = TargetRecord::new();
        for identifier in &self.identifiers {
            key.insert(
                identifier.clone(),
                record.get(identifier).cloned().unwrap_or(TargetValue::Null),
            );
        }
        key
    }
}

impl MappingSet {
    /// Checks every mapping against the table's metadata and the target schema, and returns
    /// every violation at once, or the mapping ready to convert records.
    pub fn validate(&self, metadata: &EntityMetadata) -> Result<ValidatedMapping, MappingErrors> {
        let mut violations = Vec::new();
        let schema = &self.target;
        let object = &schema.object;
        let field_names: Vec<&str> = schema.fields.keys().map(String::as_str).collect();

        for name in &schema.required {
            if schema.field(name).is_none() {
                violations.push(set_violation(
                    name,
                    ViolationKind::UnknownTargetField,
                    format!(
                        "`required` names `{name}`, which is not a field of `{object}`{}; add it to target.fields or remove it from required",
                        did_you_mean(name, &field_names)
                    ),
                ));
            }
        }
        for name in &self.identifiers {
            if schema.field(name).is_none() {
                violations.push(set_violation(
                    name,
                    ViolationKind::UnknownTargetField,
                    format!(
                        "`identifiers` names `{name}`, which is not a field of `{object}`{}; name a field of target.fields",
                        did_you_mean(name, &field_names)
                    ),
                ));
            }
        }

        let mut steps = Vec::new();
        let mut first_writer: Vec<(&str, usize)> = Vec::new();
        for (index, mapping) in self.mappings.iter().enumerate() {
            let before = violations.len();
            let mut report = |kind: ViolationKind, source: Option<&str>, message: String| {
                violations.push(Violation {
                    mapping: Some(index),
                    source: source.map(str::to_owned),
                    target: Some(mapping.target.clone()).filter(|t| !t.is_empty()),
                    kind,
                    message,
                })
            };
            if let Some((_, first)) = first_writer.iter().find(|(t, _)| *t == mapping.target) {
                report(
                    ViolationKind::DuplicateTarget,
                    mapping.source.as_deref(),
                    format!(
                        "mappings[{first}] already writes `{}`; a field is written by one mapping only, so remove one of them or change its target",
                        mapping.target
                    ),
                );
            } else {
                first_writer.push((&mapping.target, index));
            }
            let field = schema.field(&mapping.target).copied();
            if field.is_none() {
                report(
                    ViolationKind::UnknownTargetField,
                    mapping.source.as_deref(),
                    format!(
                        "`{object}` has no field `{}`{}; add it to target.fields or map to an existing field",
                        mapping.target,
                        did_you_mean(&mapping.target, &field_names)
                    ),
                );
            }
            if let Err(message) = check_shape(mapping) {
                report(
                    ViolationKind::InvalidMapping,
                    mapping.source.as_deref(),
                    message,
                );
                continue;
            }

            let source = if let Some(name) = &mapping.source {
                let read = if mapping.label {
                    Read::Label
                } else if mapping.lookup_table {
                    Read::LookupTable
                } else {
                    Read::Value
                };
                match resolve(name, metadata) {
                    Err((kind, message)) => {
                        report(kind, Some(name), message);
                        None
                    }
                    Ok((attribute, kind)) => {
                        match check_read(name, attribute, kind, read) {
                            Err((violation, message)) => report(violation, Some(name), message),
                            Ok(()) => {
                                if let Some(field) = field {
                                    let fits = compatible_targets(kind, read);
                                    if !fits.contains(&field.field_type) {
                                        report(
                                            ViolationKind::IncompatibleTypes,
                                            Some(name),
                                            incompatible(
                                                name,
                                                attribute,
                                                read,
                                                field.field_type,
                                                fits,
                                            ),
                                        );
                                    }
                                }
                            }
                        }
                        Some(StepSource::Column(column(attribute, kind, read)))
                    }
                }
            } else if let Some(constant) = &mapping.constant {
                field.and_then(|field| match convert::literal_to(constant, &field) {
                    Ok(value) => Some(StepSource::Constant(value)),
                    Err(reason) => {
                        report(
                            ViolationKind::InvalidConstant,
                            None,
                            format!("the constant does not fit: {reason}"),
                        );
                        None
                    }
                })
            } else if let Some(lookup) = &mapping.lookup {
                let mut valid = true;
                if lookup.object.trim().is_empty() {
                    valid = false;
                    report(
                        ViolationKind::InvalidLookup,
                        None,
                        "the lookup names no object; set lookup.object to the target object searched (such as `Company`)".into(),
                    );
                }
                let count = lookup.match_fields.len();
                if count == 0 || count > MAX_MATCH_FIELDS {
                    valid = false;
                    report(
                        ViolationKind::InvalidLookup,
                        None,
                        format!(
                            "the lookup has {count} match fields; give between 1 and {MAX_MATCH_FIELDS} `field: source column` pairs in lookup.match"
                        ),
                    );
                }
                if field.is_some_and(|field| {
                    !matches!(
                        field.field_type,
                        TargetFieldType::Id | TargetFieldType::String
                    )
                }) {
                    let field_type = field.map(|f| f.field_type).unwrap_or(TargetFieldType::Id);
                    valid = false;
                    report(
                        ViolationKind::IncompatibleTypes,
                        None,
                        format!(
                            "a derived lookup writes an id, which fits an id or string field, not a {field_type} field; change the target field"
                        ),
                    );
                }
                let mut criteria = Vec::new();
                for (match_field, source) in &lookup.match_fields {
                    match resolve(source, metadata) {
                        Err((kind, message)) => {
                            valid = false;
                            report(
                                kind,
                                Some(source),
                                format!("in lookup.match.{match_field}: {message}"),
                            );
                        }
                        Ok((attribute, kind)) => criteria
                            .push((match_field.clone(), column(attribute, kind, Read::Value))),
                    }
                }
                valid.then(|| StepSource::Derived {
                    object: lookup.object.clone(),
                    criteria,
                    multiple: lookup.multiple,
                })
            } else {
                None
            };

            let default = match (&mapping.default, field) {
                (Some(default), Some(field)) => match convert::literal_to(default, &field) {
                    Ok(value) => Some(value),
                    Err(reason) => {
                        report(
                            ViolationKind::InvalidConstant,
                            mapping.source.as_deref(),
                            format!("the default does not fit: {reason}"),
                        );
                        None
                    }
                },
                _ => None,
            };

            if violations.len() == before {
                if let (Some(source), Some(field)) = (source, field) {
                    steps.push(Step {
                        target: mapping.target.clone(),
                        field,
                        source,
                        default,
                    });
                }
            }
        }

        let mapped = |name: &str| self.mappings.iter().any(|m| m.target == name);
        let needs_identifiers = self.mode != WriteMode::Insert;
        for name in &schema.required {
            let reported_as_identifier = self.identifiers.contains(name);
            if schema.field(name).is_some() && !mapped(name) && !reported_as_identifier {
                violations.push(set_violation(
                    name,
                    ViolationKind::RequiredFieldUnmapped,
                    format!(
                        "`{name}` is required by `{object}` but no mapping writes it; add a mapping (a source, a constant or a lookup) with target `{name}`"
                    ),
                ));
            }
        }
        if needs_identifiers && self.identifiers.is_empty() {
            violations.push(Violation {
                mapping: None,
                source: None,
                target: None,
                kind: ViolationKind::MissingIdentifier,
                message: format!(
                    "mode `{}` needs identifiers to find the target record; list the identifying fields of `{object}` in identifiers, or use mode insert",
                    match self.mode {
                        WriteMode::Update => "update",
                        _ => "upsert",
                    }
                ),
            });
        }
        for name in &self.identifiers {
            if schema.field(name).is_some() && !mapped(name) {
                violations.push(set_violation(
                    name,
                    ViolationKind::IdentifierUnmapped,
                    format!(
                        "`{name}` is an identifier but no mapping writes it; map the column that identifies the record (such as `{}`) to `{name}`",
                        metadata.primary_id_attribute()
                    ),
                ));
            }
        }

        if violations.is_empty() {
            Ok(ValidatedMapping {
                object: object.clone(),
                mode: self.mode,
                identifiers: self.identifiers.clone(),
                required: schema.required.clone(),
                steps,
            })
        } else {
            Err(MappingErrors {
                object: object.clone(),
                violations,
            })
        }
    }
}

fn set_violation(target: &str, kind: ViolationKind, message: String) -> Violation {
    Violation {
        mapping: None,
        source: None,
        target: Some(target.to_owned()),
        kind,
        message,
    }
}

fn column(attribute: &AttributeMetadata, kind: SourceKind, read: Read) -> SourceColumn {
    SourceColumn {
        name: attribute.logical_name().to_owned(),
        kind,
        read,
        options: attribute.options().to_vec(),
        targets: attribute.targets().to_vec(),
    }
}

/// Exactly one of source, constant or lookup, and options that fit it.
fn check_shape(mapping: &FieldMapping) -> Result<(), String> {
    if mapping.target.trim().is_empty() {
        return Err(
            "the mapping has no target; set `target` to a field of the target object".into(),
        );
    }
    let sources = [
        mapping.source.is_some(),
        mapping.constant.is_some(),
        mapping.lookup.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if sources != 1 {
        return Err(format!(
            "the mapping has {sources} of `source`, `constant` and `lookup`; give exactly one"
        ));
    }
    if mapping.source.is_none() && (mapping.label || mapping.lookup_table) {
        return Err(
            "`label` and `lookup_table` apply to a `source` column only; remove them".into(),
        );
    }
    if mapping.label && mapping.lookup_table {
        return Err("`label` and `lookup_table` cannot both be set; choose one".into());
    }
    if mapping.constant.is_some() && mapping.default.is_some() {
        return Err("a constant needs no `default`; remove it".into());
    }
    Ok(())
}

/// Finds the column `name` names, or explains why it cannot be mapped.
fn resolve<'m>(
    name: &str,
    metadata: &'m EntityMetadata,
) -> Result<(&'m AttributeMetadata, SourceKind), (ViolationKind, String)> {
    let table = metadata.logical_name();
    if let Some(position) = name.find(['.', '/', '(']) {
        let head = &name[..position];
        if let Some(lookup) = lookup_behind(head, metadata) {
            return Err((
                ViolationKind::LookupFieldAccess,
                id_only(name, lookup, false),
            ));
        }
        return Err((
            ViolationKind::UnknownAttribute,
            format!(
                "`{name}` is a path, but a mapping reads a column of `{table}` itself by its logical name; name one column, such as `{}`",
                metadata.primary_id_attribute()
            ),
        ));
    }
    let web_api_form = lookup_property(name);
    let plain = web_api_form.unwrap_or(name);
    let Some(attribute) = metadata.attribute(plain) else {
        if let Some(lookup) = lookup_prefix(plain, metadata) {
            return Err((
                ViolationKind::LookupFieldAccess,
                id_only(name, lookup, false),
            ));
        }
        let names: Vec<&str> = metadata
            .attributes()
            .iter()
            .map(|a| a.logical_name())
            .collect();
        return Err((
            ViolationKind::UnknownAttribute,
            format!(
                "`{table}` has no column `{name}`{}; use a column's logical name (lowercase) as the table's metadata lists it",
                did_you_mean(name, &names)
            ),
        ));
    };
    if web_api_form.is_some() && !attribute.attribute_type().is_lookup() {
        return Err((
            ViolationKind::UnknownAttribute,
            format!(
                "`{name}` is the Web API form of a lookup, but `{plain}` is not a lookup; map `{plain}`"
            ),
        ));
    }
    if let Some(parent) = attribute.attribute_of() {
        if let Some(lookup) = metadata
            .attribute(parent)
            .filter(|p| p.attribute_type().is_lookup())
        {
            return Err((
                ViolationKind::LookupFieldAccess,
                id_only(name, lookup, false),
            ));
        }
        return Err((
            ViolationKind::GeneratedCompanion,
            format!(
                "`{name}` is generated from `{parent}` (AttributeOf) and cannot be selected on its own; map `{parent}` instead, with \"label\": true for its label"
            ),
        ));
    }
    if !attribute.is_valid_for_read() {
        return Err((
            ViolationKind::NotReadable,
            format!("`{name}` is not valid for read in `{table}`; map a readable column instead"),
        ));
    }
    let Some(kind) = SourceKind::of(attribute) else {
        return Err((
            ViolationKind::UnsupportedAttribute,
            unsupported(name, attribute),
        ));
    };
    Ok((attribute, kind))
}

/// Whether a read fits the column's kind (labels of choices, table names of lookups).
fn check_read(
    name: &str,
    attribute: &AttributeMetadata,
    kind: SourceKind,
    read: Read,
) -> Result<(), (ViolationKind, String)> {
    match read {
        Read::Value => Ok(()),
        Read::Label if kind == SourceKind::Lookup => Err((
            ViolationKind::LookupFieldAccess,
            id_only(name, attribute, true),
        )),
        Read::Label if attribute.attribute_type().has_option_labels() => Ok(()),
        Read::Label => Err((
            ViolationKind::InvalidMapping,
            format!(
                "`{name}` is {} column, which has no label; \"label\": true applies to choice, state, status, yes/no and multi-select columns, so remove it",
                with_article(&type_name(attribute.attribute_type()))
            ),
        )),
        Read::LookupTable if kind == SourceKind::Lookup => Ok(()),
        Read::LookupTable => Err((
            ViolationKind::InvalidMapping,
            format!(
                "`{name}` is {} column, not a lookup; \"lookup_table\": true applies to lookups only, so remove it",
                with_article(&type_name(attribute.attribute_type()))
            ),
        )),
    }
}

/// `_parentcustomerid_value` -> `parentcustomerid`.
fn lookup_property(name: &str) -> Option<&str> {
    name.strip_prefix('_')?
        .strip_suffix("_value")
        .filter(|n| !n.is_empty())
}

/// The lookup column a path's first segment goes through: the lookup itself
/// (`parentcustomerid`, `_parentcustomerid_value`) or its navigation property
/// (`parentcustomerid_account`).
fn lookup_behind<'m>(head: &str, metadata: &'m EntityMetadata) -> Option<&'m AttributeMetadata> {
    let plain = lookup_property(head).unwrap_or(head);
    if let Some(attribute) = metadata
        .attribute(plain)
        .filter(|a| a.attribute_type().is_lookup())
    {
        return Some(attribute);
    }
    let by_relationship = metadata
        .relationships()
        .iter()
        .filter(|r| r.referencing_entity() == metadata.logical_name())
        .find(|r| r.referencing_navigation_property() == Some(head))
        .and_then(|r| metadata.attribute(r.referencing_attribute()));
    by_relationship.or_else(|| lookup_prefix(head, metadata))
}

/// The lookup whose name `name` extends (`parentcustomeridname`, `parentcustomerid_account`).
fn lookup_prefix<'m>(name: &str, metadata: &'m EntityMetadata) -> Option<&'m AttributeMetadata> {
    metadata
        .attributes()
        .iter()
        .filter(|a| a.attribute_type().is_lookup())
        .filter(|a| name.len() > a.logical_name().len() && name.starts_with(a.logical_name()))
        .max_by_key(|a| a.logical_name().len())
}

/// The id-only rule, stated for `name` reaching through `lookup` (or reading its label).
fn id_only(name: &str, lookup: &AttributeMetadata, label: bool) -> String {
    let column = lookup.logical_name();
    let tables = match lookup.targets() {
        [] => "the related record".to_owned(),
        [one] => format!("the {one}"),
        many => format!("the {}", many.join(" or ")),
    };
    let opening = if label {
        format!("the label of `{name}` is the name of {tables} that `{column}` points at")
    } else {
        format!("`{name}` reaches a field of {tables} that `{column}` points at")
    };
    match lookup.attribute_type() {
        AttributeType::Customer => format!(
            "{opening}, but a Customer-type lookup maps by its id only; map `{column}` itself to an id field, and sync the account or contact table in its own job to get its fields"
        ),
        _ => format!(
            "{opening}, but lookups map by id only; map `{column}` itself to an id field, and sync that table in its own job to get its fields"
        ),
    }
}

fn unsupported(name: &str, attribute: &AttributeMetadata) -> String {
    match attribute.attribute_type() {
        AttributeType::Other(unknown) if unknown == "Unknown" => format!(
            "the type of `{name}` is unknown (the metadata gave neither AttributeType nor a cast); fetch the metadata with EntityMetadata::fetch"
        ),
        other => format!(
            "`{name}` is {} column, which the connector does not sync; leave it out of the mapping",
            with_article(&type_name(other))
        ),
    }
}

fn type_name(attribute_type: &AttributeType) -> String {
    match attribute_type {
        AttributeType::Other(name) => name.clone(),
        AttributeType::MultiSelectPicklist => "MultiSelectPicklist".into(),
        other => format!("{other:?}"),
    }
}

fn incompatible(
    name: &str,
    attribute: &AttributeMetadata,
    read: Read,
    target: TargetFieldType,
    fits: &[TargetFieldType],
) -> String {
    let what = match read {
        Read::Value => format!(
            "{}{} column",
            with_article(&type_name(attribute.attribute_type())),
            if attribute.is_date_only() {
                " (DateOnly)"
            } else {
                ""
            }
        ),
        Read::Label => "a label".into(),
        Read::LookupTable => "a table name".into(),
    };
    let fits: Vec<&str> = fits.iter().map(|t| t.as_str()).collect();
    format!(
        "`{name}` is {what}, which does not convert to {} field; map it to {} field or choose another column",
        with_article(target.as_str()),
        with_article(&fits.join(" or "))
    )
}

/// `word` with `a` or `an` before it.
fn with_article(word: &str) -> String {
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    format!("{} {word}", if vowel { "an" } else { "a" })
}

/// ` (did you mean `x`?)` for the names nearest `wanted`, or nothing.
fn did_you_mean(wanted: &str, names: &[&str]) -> String {
    let wanted_lower = wanted.to_lowercase();
    let limit = (wanted.chars().count() / 3).max(2);
    let mut near: Vec<(usize, &str)> = names
        .iter()
        .map(|n| (distance(&wanted_lower, &n.to_lowercase()), *n))
        .filter(|(d, _)| *d <= limit)
        .collect();
    near.sort();
    near.truncate(3);
    match near.as_slice() {
        [] => String::new(),
        [(_, one)] => format!(" (did you mean `{one}`?)"),
        many => format!(
            " (did you mean {}?)",
            many.iter()
                .map(|(_, n)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current[j + 1] = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("emailadress1", "emailaddress1"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }

    #[test]
    fn suggestions_are_the_nearest_names() {
        let names = ["emailaddress1", "emailaddress2", "fullname"];
        assert_eq!(
            did_you_mean("emailadress1", &names),
            " (did you mean `emailaddress1`, `emailaddress2`?)"
        );
        assert_eq!(did_you_mean("zzzzzzzz", &names), "");
    }
}
