//! The rules of one mapping, one function each: each returns what it compiles, or the
//! problems it found.

use super::FieldMapping;
use super::derived::{DerivedLookup, MAX_MATCH_FIELDS};
use super::explain::{did_you_mean, id_only, incompatible, type_name, unsupported, with_article};
use super::plan::{Read, SourceColumn, SourceKind, StepSource, compatible_targets};
use super::schema::{Literal, TargetField, TargetFieldType, TargetSchema, TargetValue};
use super::values;
use super::violation::ViolationKind;
use crate::metadata::{AttributeMetadata, EntityMetadata, lookup_of_value_property};

/// A broken rule of one mapping, before it is placed in the set (its index and target).
pub(super) struct Problem {
    pub(super) kind: ViolationKind,
    pub(super) source: Option<String>,
    pub(super) message: String,
}

impl Problem {
    fn new(kind: ViolationKind, source: Option<&str>, message: String) -> Self {
        Self {
            kind,
            source: source.map(str::to_owned),
            message,
        }
    }
}

/// Another mapping, at `earlier`, already writes the target.
pub(super) fn duplicate_target(mapping: &FieldMapping, earlier: Option<usize>) -> Option<Problem> {
    let first = earlier?;
    Some(Problem::new(
        ViolationKind::DuplicateTarget,
        mapping.source.as_deref(),
        format!(
            "mappings[{first}] already writes `{}`; a field is written by one mapping only, so remove one of them or change its target",
            mapping.target
        ),
    ))
}

/// The target is not a field of the target object.
pub(super) fn unknown_target(
    mapping: &FieldMapping,
    schema: &TargetSchema,
    field_names: &[&str],
) -> Option<Problem> {
    if schema.field(&mapping.target).is_some() {
        return None;
    }
    Some(Problem::new(
        ViolationKind::UnknownTargetField,
        mapping.source.as_deref(),
        format!(
            "`{}` has no field `{}`{}; add it to target.fields or map to an existing field",
            schema.object,
            mapping.target,
            did_you_mean(&mapping.target, field_names)
        ),
    ))
}

/// Exactly one of source, constant or lookup, and options that fit it.
pub(super) fn shape(mapping: &FieldMapping) -> Option<Problem> {
    shape_error(mapping).err().map(|message| {
        Problem::new(
            ViolationKind::InvalidMapping,
            mapping.source.as_deref(),
            message,
        )
    })
}

fn shape_error(mapping: &FieldMapping) -> Result<(), String> {
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

/// A source column that exists, can be read as the mapping asks, and converts to the field.
pub(super) fn source_column(
    mapping: &FieldMapping,
    name: &str,
    field: Option<&TargetField>,
    metadata: &EntityMetadata,
) -> Result<StepSource, Problem> {
    let read = if mapping.label {
        Read::Label
    } else if mapping.lookup_table {
        Read::LookupTable
    } else {
        Read::Value
    };
    let problem = |(kind, message)| Problem::new(kind, Some(name), message);
    let (attribute, kind) = resolve(name, metadata).map_err(problem)?;
    check_read(name, attribute, kind, read).map_err(problem)?;
    if let Some(field) = field {
        let fits = compatible_targets(kind, read);
        if !fits.contains(&field.field_type) {
            let message = incompatible(name, attribute, read, field.field_type, fits);
            return Err(problem((ViolationKind::IncompatibleTypes, message)));
        }
    }
    Ok(StepSource::Column(SourceColumn::new(attribute, kind, read)))
}

/// A constant that fits the field; nothing to compile when the field is unknown.
pub(super) fn constant(
    constant: &Literal,
    field: Option<&TargetField>,
) -> Result<Option<StepSource>, Problem> {
    let Some(field) = field else {
        return Ok(None);
    };
    match values::literal_to(constant, field) {
        Ok(value) => Ok(Some(StepSource::Constant(value))),
        Err(reason) => Err(Problem::new(
            ViolationKind::InvalidConstant,
            None,
            format!("the constant does not fit: {reason}"),
        )),
    }
}

/// A derived lookup: an object, 1 to [`MAX_MATCH_FIELDS`] match columns that exist, and an id
/// or string field.
pub(super) fn derived(
    lookup: &DerivedLookup,
    field: Option<&TargetField>,
    metadata: &EntityMetadata,
) -> Result<StepSource, Vec<Problem>> {
    let mut problems: Vec<Problem> = [lookup_object(lookup), match_count(lookup), id_field(field)]
        .into_iter()
        .flatten()
        .collect();
    let mut criteria = Vec::new();
    for (match_field, source) in &lookup.match_fields {
        match resolve(source, metadata) {
            Ok((attribute, kind)) => criteria.push((
                match_field.clone(),
                SourceColumn::new(attribute, kind, Read::Value),
            )),
            Err((kind, message)) => problems.push(Problem::new(
                kind,
                Some(source),
                format!("in lookup.match.{match_field}: {message}"),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(StepSource::Derived {
        object: lookup.object.clone(),
        criteria,
        multiple: lookup.multiple,
    })
}

fn lookup_object(lookup: &DerivedLookup) -> Option<Problem> {
    lookup.object.trim().is_empty().then(|| {
        Problem::new(
            ViolationKind::InvalidLookup,
            None,
            "the lookup names no object; set lookup.object to the target object searched (such as `Company`)".into(),
        )
    })
}

fn match_count(lookup: &DerivedLookup) -> Option<Problem> {
    let count = lookup.match_fields.len();
    (count == 0 || count > MAX_MATCH_FIELDS).then(|| {
        Problem::new(
            ViolationKind::InvalidLookup,
            None,
            format!(
                "the lookup has {count} match fields; give between 1 and {MAX_MATCH_FIELDS} `field: source column` pairs in lookup.match"
            ),
        )
    })
}

fn id_field(field: Option<&TargetField>) -> Option<Problem> {
    let field_type = field?.field_type;
    (!matches!(field_type, TargetFieldType::Id | TargetFieldType::String)).then(|| {
        Problem::new(
            ViolationKind::IncompatibleTypes,
            None,
            format!(
                "a derived lookup writes an id, which fits an id or string field, not a {field_type} field; change the target field"
            ),
        )
    })
}

/// A default that fits the field.
pub(super) fn default_value(
    mapping: &FieldMapping,
    field: Option<&TargetField>,
) -> Result<Option<TargetValue>, Problem> {
    let (Some(default), Some(field)) = (&mapping.default, field) else {
        return Ok(None);
    };
    values::literal_to(default, field)
        .map(Some)
        .map_err(|reason| {
            Problem::new(
                ViolationKind::InvalidConstant,
                mapping.source.as_deref(),
                format!("the default does not fit: {reason}"),
            )
        })
}

/// Why a column cannot be mapped.
type Refusal = (ViolationKind, String);

/// Finds the column `name` names, or explains why it cannot be mapped.
fn resolve<'m>(
    name: &str,
    metadata: &'m EntityMetadata,
) -> Result<(&'m AttributeMetadata, SourceKind), Refusal> {
    if let Some(position) = name.find(['.', '/', '(']) {
        return Err(path_refusal(name, &name[..position], metadata));
    }
    let web_api_form = lookup_of_value_property(name);
    let plain = web_api_form.unwrap_or(name);
    let Some(attribute) = metadata.attribute(plain) else {
        return Err(unknown_column(name, plain, metadata));
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
        return Err(companion_refusal(name, parent, metadata));
    }
    if !attribute.is_valid_for_read() {
        return Err((
            ViolationKind::NotReadable,
            format!(
                "`{name}` is not valid for read in `{}`; map a readable column instead",
                metadata.logical_name()
            ),
        ));
    }
    let kind = SourceKind::of(attribute).ok_or_else(|| {
        (
            ViolationKind::UnsupportedAttribute,
            unsupported(name, attribute),
        )
    })?;
    Ok((attribute, kind))
}

/// A path (`parentcustomerid.name`): through a lookup, the id-only rule; otherwise not a column.
fn path_refusal(name: &str, head: &str, metadata: &EntityMetadata) -> Refusal {
    if let Some(lookup) = lookup_behind(head, metadata) {
        return (
            ViolationKind::LookupFieldAccess,
            id_only(name, lookup, false),
        );
    }
    (
        ViolationKind::UnknownAttribute,
        format!(
            "`{name}` is a path, but a mapping reads a column of `{}` itself by its logical name; name one column, such as `{}`",
            metadata.logical_name(),
            metadata.primary_id_attribute()
        ),
    )
}

/// A name that is no column: a lookup's companion name, or a typo.
fn unknown_column(name: &str, plain: &str, metadata: &EntityMetadata) -> Refusal {
    if let Some(lookup) = lookup_prefix(plain, metadata) {
        return (
            ViolationKind::LookupFieldAccess,
            id_only(name, lookup, false),
        );
    }
    let names: Vec<&str> = metadata
        .attributes()
        .iter()
        .map(|a| a.logical_name())
        .collect();
    (
        ViolationKind::UnknownAttribute,
        format!(
            "`{}` has no column `{name}`{}; use a column's logical name (lowercase) as the table's metadata lists it",
            metadata.logical_name(),
            did_you_mean(name, &names)
        ),
    )
}

/// A column generated from `parent` (AttributeOf): a lookup's name, or another companion.
fn companion_refusal(name: &str, parent: &str, metadata: &EntityMetadata) -> Refusal {
    if let Some(lookup) = metadata
        .attribute(parent)
        .filter(|p| p.attribute_type().is_lookup())
    {
        return (
            ViolationKind::LookupFieldAccess,
            id_only(name, lookup, false),
        );
    }
    (
        ViolationKind::GeneratedCompanion,
        format!(
            "`{name}` is generated from `{parent}` (AttributeOf) and cannot be selected on its own; map `{parent}` instead, with \"label\": true for its label"
        ),
    )
}

/// Whether a read fits the column's kind (labels of choices, table names of lookups).
fn check_read(
    name: &str,
    attribute: &AttributeMetadata,
    kind: SourceKind,
    read: Read,
) -> Result<(), Refusal> {
    let type_name = || with_article(&type_name(attribute.attribute_type()));
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
                type_name()
            ),
        )),
        Read::LookupTable if kind == SourceKind::Lookup => Ok(()),
        Read::LookupTable => Err((
            ViolationKind::InvalidMapping,
            format!(
                "`{name}` is {} column, not a lookup; \"lookup_table\": true applies to lookups only, so remove it",
                type_name()
            ),
        )),
    }
}

/// The lookup column a path's first segment goes through: the lookup itself
/// (`parentcustomerid`, `_parentcustomerid_value`) or its navigation property
/// (`parentcustomerid_account`).
fn lookup_behind<'m>(head: &str, metadata: &'m EntityMetadata) -> Option<&'m AttributeMetadata> {
    let plain = lookup_of_value_property(head).unwrap_or(head);
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
