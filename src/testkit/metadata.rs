//! `EntityDefinitions`: tables, their attributes, and the typed attribute casts
//! (lookups' targets, DateTime behaviour, option sets).

use super::odata::api_base;
use super::reply::{self, ApiError, Obj, Reply};
use super::state::{AttributeDef, EntityDef, State, stable_guid};
use crate::metadata::AttributeType;
use serde_json::{Value as Json, json};
use url::Url;

const ENTITY_PROPS: &[&str] = &[
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ChangeTrackingEnabled",
    "IsPrivate",
    "TableType",
    "IsCustomEntity",
    "IsIntersect",
    "IsActivity",
    "OwnershipType",
];

const ATTRIBUTE_PROPS: &[&str] = &[
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "AttributeType",
    "AttributeTypeName",
    "IsValidForRead",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsCustomAttribute",
    "AttributeOf",
    "EntityLogicalName",
];

/// One column as metadata lists it: the defined ones and their generated companions.
#[derive(Debug, Clone)]
struct Column {
    logical_name: String,
    attribute_type: AttributeType,
    attribute_of: Option<String>,
    def: Option<AttributeDef>,
}

fn columns(def: &EntityDef) -> Vec<Column> {
    let mut out = Vec::new();
    for a in &def.attributes {
        out.push(Column {
            logical_name: a.logical_name.clone(),
            attribute_type: a.attribute_type.clone(),
            attribute_of: None,
            def: Some(a.clone()),
        });
        let companion = |suffix: &str, ty: AttributeType| Column {
            logical_name: format!("{}{suffix}", a.logical_name),
            attribute_type: ty,
            attribute_of: Some(a.logical_name.clone()),
            def: None,
        };
        match a.attribute_type {
            AttributeType::Lookup => out.push(companion("name", AttributeType::String)),
            AttributeType::Customer | AttributeType::Owner => {
                out.push(companion("name", AttributeType::String));
                out.push(companion("yominame", AttributeType::String));
                out.push(companion("type", AttributeType::EntityName));
            }
            AttributeType::Picklist
            | AttributeType::State
            | AttributeType::Status
            | AttributeType::Boolean => out.push(companion("name", AttributeType::Virtual)),
            _ => {}
        }
    }
    out.sort_by(|a, b| a.logical_name.cmp(&b.logical_name));
    out
}

/// `(AttributeType, AttributeTypeName, @odata.type cast)` of a column type.
fn type_names(ty: &AttributeType) -> (String, String, Option<&'static str>) {
    let (base, name, cast) = match ty {
        AttributeType::Boolean => ("Boolean", "BooleanType", Some("BooleanAttributeMetadata")),
        AttributeType::Customer => ("Customer", "CustomerType", Some("LookupAttributeMetadata")),
        AttributeType::DateTime => (
            "DateTime",
            "DateTimeType",
            Some("DateTimeAttributeMetadata"),
        ),
        AttributeType::Decimal => ("Decimal", "DecimalType", Some("DecimalAttributeMetadata")),
        AttributeType::Double => ("Double", "DoubleType", Some("DoubleAttributeMetadata")),
        AttributeType::Integer => ("Integer", "IntegerType", Some("IntegerAttributeMetadata")),
        AttributeType::Lookup => ("Lookup", "LookupType", Some("LookupAttributeMetadata")),
        AttributeType::Memo => ("Memo", "MemoType", Some("MemoAttributeMetadata")),
        AttributeType::Money => ("Money", "MoneyType", Some("MoneyAttributeMetadata")),
        AttributeType::Owner => ("Owner", "OwnerType", Some("LookupAttributeMetadata")),
        AttributeType::PartyList => (
            "PartyList",
            "PartyListType",
            Some("LookupAttributeMetadata"),
        ),
        AttributeType::Picklist => (
            "Picklist",
            "PicklistType",
            Some("PicklistAttributeMetadata"),
        ),
        AttributeType::State => ("State", "StateType", Some("StateAttributeMetadata")),
        AttributeType::Status => ("Status", "StatusType", Some("StatusAttributeMetadata")),
        AttributeType::String => ("String", "StringType", Some("StringAttributeMetadata")),
        AttributeType::Uniqueidentifier => (
            "Uniqueidentifier",
            "UniqueidentifierType",
            Some("UniqueIdentifierAttributeMetadata"),
        ),
        AttributeType::CalendarRules => ("CalendarRules", "CalendarRulesType", None),
        AttributeType::Virtual => ("Virtual", "VirtualType", None),
        AttributeType::BigInt => ("BigInt", "BigIntType", Some("BigIntAttributeMetadata")),
        AttributeType::ManagedProperty => (
            "ManagedProperty",
            "ManagedPropertyType",
            Some("ManagedPropertyAttributeMetadata"),
        ),
        AttributeType::EntityName => (
            "EntityName",
            "EntityNameType",
            Some("EntityNameAttributeMetadata"),
        ),
        AttributeType::MultiSelectPicklist => (
            "Virtual",
            "MultiSelectPicklistType",
            Some("MultiSelectPicklistAttributeMetadata"),
        ),
        AttributeType::Image => ("Virtual", "ImageType", Some("ImageAttributeMetadata")),
        AttributeType::File => ("Virtual", "FileType", Some("FileAttributeMetadata")),
        AttributeType::Other(other) => {
            return (other.clone(), format!("{other}Type"), None);
        }
    };
    (base.to_owned(), name.to_owned(), cast)
}

fn schema_name(logical: &str) -> String {
    let mut chars = logical.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// Every property of an attribute (base `AttributeMetadata` and its cast), by name.
fn attribute_props(entity: &EntityDef, c: &Column) -> Vec<(&'static str, Json)> {
    let (base, name, _) = type_names(&c.attribute_type);
    let mut props = vec![
        (
            "MetadataId",
            json!(stable_guid(&format!(
                "{}.{}",
                entity.logical_name, c.logical_name
            ))),
        ),
        ("LogicalName", json!(c.logical_name)),
        ("SchemaName", json!(schema_name(&c.logical_name))),
        ("AttributeType", json!(base)),
        ("AttributeTypeName", json!({"Value": name})),
        ("IsValidForRead", json!(true)),
        ("IsPrimaryId", json!(c.logical_name == entity.primary_id)),
        (
            "IsPrimaryName",
            json!(entity.primary_name.as_deref() == Some(c.logical_name.as_str())),
        ),
        ("IsCustomAttribute", json!(c.logical_name.contains('_'))),
        ("AttributeOf", json!(c.attribute_of)),
        ("EntityLogicalName", json!(entity.logical_name)),
    ];
    if let Some(def) = &c.def {
        if def.attribute_type.is_lookup() {
            props.push(("Targets", json!(def.targets)));
        }
        if def.attribute_type == AttributeType::DateTime {
            let (behavior, format) = if def.date_only {
                ("DateOnly", "DateOnly")
            } else {
                ("UserLocal", "DateAndTime")
            };
            props.push(("DateTimeBehavior", json!({"Value": behavior})));
            props.push(("Format", json!(format)));
        }
    }
    props
}

/// The cast-specific properties valid on `cast`.
fn cast_props(cast: &str) -> &'static [&'static str] {
    match cast {
        "LookupAttributeMetadata" => &["Targets"],
        "DateTimeAttributeMetadata" => &["DateTimeBehavior", "Format"],
        _ => &[],
    }
}

fn unknown_property(name: &str, type_name: &str) -> ApiError {
    ApiError::bad_request(
        "0x80060888",
        format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{type_name}'."
        ),
    )
}

/// Splits a `$select` list; `None` when absent.
fn select_list(select: Option<&str>) -> Option<Vec<String>> {
    select.map(|s| {
        s.split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()
    })
}

/// Parsed `$expand=Attributes($select=...)` / `$expand=OptionSet($select=Options)`.
fn expand_of(expand: &str) -> (String, Option<String>) {
    let expand = expand.trim();
    match expand.split_once('(') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')').unwrap_or(rest);
            let select = inner
                .split(';')
                .find_map(|o| o.trim().strip_prefix("$select="))
                .map(str::to_owned);
            (name.trim().to_owned(), select)
        }
        None => (expand.to_owned(), None),
    }
}

/// `GET EntityDefinitions...` below the Web API root.
pub(crate) fn get(state: &State, path: &str, url: &Url) -> Result<Reply, ApiError> {
    let mut select = None;
    let mut expand = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "$select" => select = Some(value.into_owned()),
            "$expand" => expand = Some(value.into_owned()),
            other => {
                return Err(ApiError::bad_request(
                    "0x80060888",
                    format!("The stand-in does not support the query option {other} on metadata."),
                ));
            }
        }
    }
    let base = api_base(state);
    if path == "EntityDefinitions" {
        return entity_list(state, &base, select.as_deref());
    }
    let rest = path
        .strip_prefix("EntityDefinitions(")
        .ok_or_else(|| not_found(path))?;
    let (key, tail) = rest.split_once(')').ok_or_else(|| not_found(path))?;
    let name = key
        .strip_prefix("LogicalName=")
        .map(|n| n.trim_matches('\''))
        .ok_or_else(|| {
            ApiError::bad_request(
                "0x80060888",
                "The stand-in addresses tables as EntityDefinitions(LogicalName='<name>').",
            )
        })?;
    let Some(table) = state.table(name) else {
        return Err(ApiError::new(
            404,
            "0x80040217",
            format!(
                "Could not find an entity with name {name} and id 00000000-0000-0000-0000-000000000000"
            ),
        ));
    };
    let def = &table.def;
    match tail {
        "" => entity(&base, def, select.as_deref(), expand.as_deref()),
        "/Attributes" => attributes(&base, def, None, select.as_deref(), expand.as_deref()),
        cast => match cast.strip_prefix("/Attributes/Microsoft.Dynamics.CRM.") {
            Some(cast) => attributes(&base, def, Some(cast), select.as_deref(), expand.as_deref()),
            None => Err(not_found(path)),
        },
    }
}

fn not_found(path: &str) -> ApiError {
    let segment = path.rsplit('/').next().unwrap_or(path);
    ApiError::new(
        404,
        "0x8006088a",
        format!("Resource not found for the segment '{segment}'."),
    )
}

fn entity_props(def: &EntityDef) -> Vec<(&'static str, Json)> {
    vec![
        ("MetadataId", json!(stable_guid(&def.logical_name))),
        ("LogicalName", json!(def.logical_name)),
        ("SchemaName", json!(schema_name(&def.logical_name))),
        ("EntitySetName", json!(def.entity_set_name)),
        ("LogicalCollectionName", json!(def.entity_set_name)),
        ("PrimaryIdAttribute", json!(def.primary_id)),
        ("PrimaryNameAttribute", json!(def.primary_name)),
        ("ChangeTrackingEnabled", json!(def.change_tracking)),
        ("IsPrivate", json!(false)),
        ("TableType", json!("Standard")),
        ("IsCustomEntity", json!(def.logical_name.contains('_'))),
        ("IsIntersect", json!(false)),
        ("IsActivity", json!(false)),
        ("OwnershipType", json!("UserOwned")),
    ]
}

/// Picks `select`ed properties (plus `MetadataId`, always sent) from `props`.
fn pick(props: Vec<(&'static str, Json)>, select: Option<&[String]>) -> Obj {
    let mut obj = Obj::new();
    for (name, value) in props {
        if name == "MetadataId" || select.is_none_or(|s| s.iter().any(|p| p == name)) {
            obj.push(name, value);
        }
    }
    obj
}

fn check_select(
    select: Option<&[String]>,
    allowed: &[&str],
    type_name: &str,
) -> Result<(), ApiError> {
    for p in select.unwrap_or_default() {
        if !allowed.contains(&p.as_str()) {
            return Err(unknown_property(p, type_name));
        }
    }
    Ok(())
}

fn entity_list(state: &State, base: &str, select: Option<&str>) -> Result<Reply, ApiError> {
    let select = select_list(select);
    check_select(select.as_deref(), ENTITY_PROPS, "EntityMetadata")?;
    let items: Vec<Obj> = state
        .tables
        .iter()
        .map(|t| pick(entity_props(&t.def), select.as_deref()))
        .collect();
    let columns = select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let body = reply::collection(
        &format!("{base}$metadata#EntityDefinitions{columns}"),
        items.iter(),
        Obj::write,
        &[],
    );
    Ok(Reply::ok(body))
}

fn entity(
    base: &str,
    def: &EntityDef,
    select: Option<&str>,
    expand: Option<&str>,
) -> Result<Reply, ApiError> {
    let select = select_list(select);
    check_select(select.as_deref(), ENTITY_PROPS, "EntityMetadata")?;
    let mut selected = select.clone().unwrap_or_default();
    let mut attributes = None;
    if let Some(expand) = expand {
        let (name, inner) = expand_of(expand);
        if name != "Attributes" {
            return Err(unknown_property(&name, "EntityMetadata"));
        }
        let inner = select_list(inner.as_deref());
        check_select(inner.as_deref(), ATTRIBUTE_PROPS, "AttributeMetadata")?;
        let items: Vec<Obj> = columns(def)
            .iter()
            .map(|c| attribute_obj(def, c, None, inner.as_deref()))
            .collect();
        selected.push(format!(
            "Attributes({})",
            inner.clone().unwrap_or_default().join(",")
        ));
        attributes = Some(items);
    }
    let mut obj = Obj::new().with(
        "@odata.context",
        format!(
            "{base}$metadata#EntityDefinitions({})/$entity",
            selected.join(",")
        ),
    );
    for (name, value) in entity_props(def) {
        if name == "MetadataId"
            || select
                .as_deref()
                .is_none_or(|s| s.iter().any(|p| p == name))
        {
            obj.push(name, value);
        }
    }
    let mut out = String::new();
    obj.write(&mut out);
    if let Some(items) = attributes {
        out.pop();
        out.push_str(",\"Attributes\":[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item.write(&mut out);
        }
        out.push_str("]}");
    }
    Ok(Reply::ok(out))
}

/// One attribute: `@odata.type` (outside a cast), then the selected properties.
fn attribute_obj(
    def: &EntityDef,
    c: &Column,
    cast: Option<&str>,
    select: Option<&[String]>,
) -> Obj {
    let mut obj = Obj::new();
    if cast.is_none() {
        if let (_, _, Some(t)) = type_names(&c.attribute_type) {
            obj.push("@odata.type", format!("#Microsoft.Dynamics.CRM.{t}"));
        }
    }
    for (name, value) in attribute_props(def, c) {
        let base_default = cast.is_none() && ATTRIBUTE_PROPS.contains(&name);
        let wanted = match select {
            Some(s) => name == "MetadataId" || s.iter().any(|p| p == name),
            None => {
                base_default
                    || cast.is_some_and(|k| {
                        cast_props(k).contains(&name) || ATTRIBUTE_PROPS.contains(&name)
                    })
            }
        };
        if wanted {
            obj.push(name, value);
        }
    }
    obj
}

/// The attribute casts the stand-in knows (`Attributes/Microsoft.Dynamics.CRM.<cast>`).
const CASTS: &[&str] = &[
    "LookupAttributeMetadata",
    "DateTimeAttributeMetadata",
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "BooleanAttributeMetadata",
    "StringAttributeMetadata",
    "MoneyAttributeMetadata",
    "IntegerAttributeMetadata",
    "DecimalAttributeMetadata",
    "DoubleAttributeMetadata",
    "BigIntAttributeMetadata",
    "MemoAttributeMetadata",
    "UniqueIdentifierAttributeMetadata",
    "EntityNameAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata",
];

fn attributes(
    base: &str,
    def: &EntityDef,
    cast: Option<&str>,
    select: Option<&str>,
    expand: Option<&str>,
) -> Result<Reply, ApiError> {
    let select = select_list(select);
    let type_name = cast.unwrap_or("AttributeMetadata");
    check_select(select.as_deref(), &selectable(cast)?, type_name)?;
    let option_set = expand
        .map(|e| option_set_expansion(cast, e, type_name))
        .transpose()?;
    let items: Vec<Obj> = columns(def)
        .iter()
        .filter(|c| {
            cast.is_none() || (type_names(&c.attribute_type).2 == cast && c.attribute_of.is_none())
        })
        .map(|c| {
            let mut obj = attribute_obj(def, c, cast, select.as_deref());
            if let (Some(name), Some(attr)) = (&option_set, &c.def) {
                obj.push(name.as_str(), option_set_json(def, attr));
            }
            obj
        })
        .collect();
    let mut columns = select.unwrap_or_default();
    if let Some(name) = &option_set {
        columns.push(format!("{name}()"));
    }
    let path = match cast {
        Some(k) => format!("Attributes/Microsoft.Dynamics.CRM.{k}"),
        None => "Attributes".to_owned(),
    };
    let context = format!(
        "{base}$metadata#EntityDefinitions('{}')/{path}({})",
        def.logical_name,
        columns.join(",")
    );
    Ok(Reply::ok(reply::collection(
        &context,
        items.iter(),
        Obj::write,
        &[],
    )))
}

/// The properties a `$select` of the attributes (of a `cast`) may name; an unknown cast is a
/// missing resource.
fn selectable(cast: Option<&str>) -> Result<Vec<&'static str>, ApiError> {
    let mut allowed: Vec<&str> = ATTRIBUTE_PROPS.to_vec();
    if let Some(cast) = cast {
        allowed.extend_from_slice(cast_props(cast));
        if !CASTS.contains(&cast) {
            return Err(ApiError::new(
                404,
                "0x8006088a",
                format!("Resource not found for the segment 'Microsoft.Dynamics.CRM.{cast}'."),
            ));
        }
    }
    Ok(allowed)
}

/// The option set an `$expand` of choice attributes names (`OptionSet`, `GlobalOptionSet`).
fn option_set_expansion(
    cast: Option<&str>,
    expand: &str,
    type_name: &str,
) -> Result<String, ApiError> {
    let (name, inner) = expand_of(expand);
    let is_choice = matches!(
        cast,
        Some(
            "PicklistAttributeMetadata"
                | "StateAttributeMetadata"
                | "StatusAttributeMetadata"
                | "MultiSelectPicklistAttributeMetadata"
        )
    );
    if !is_choice || !matches!(name.as_str(), "OptionSet" | "GlobalOptionSet") {
        return Err(unknown_property(&name, type_name));
    }
    if let Some(inner) = &inner {
        check_select(
            select_list(Some(inner)).as_deref(),
            &["Options", "MetadataId", "Name", "IsGlobal", "OptionSetType"],
            "OptionSetMetadata",
        )?;
    }
    Ok(name)
}

fn label(text: &str) -> Json {
    let localized = json!({"Label": text, "LanguageCode": 1033, "IsManaged": true});
    json!({"LocalizedLabels": [localized.clone()], "UserLocalizedLabel": localized})
}

fn option_set_json(def: &EntityDef, attr: &AttributeDef) -> Json {
    let options: Vec<Json> = attr
        .options
        .iter()
        .map(|(value, text)| {
            let mut o =
                json!({"Value": value, "Label": label(text), "Color": null, "IsManaged": true});
            if attr.attribute_type == AttributeType::Status {
                // Status reasons belong to a state: 1 and 2 are the usual Active reasons.
                o["State"] = json!(if *value <= 2 { 0 } else { 1 });
            }
            if attr.attribute_type == AttributeType::State {
                o["DefaultStatus"] = json!(value + 1);
            }
            o
        })
        .collect();
    let kind = match attr.attribute_type {
        AttributeType::State => "State",
        AttributeType::Status => "Status",
        _ => "Picklist",
    };
    json!({
        "MetadataId": stable_guid(&format!("{}.{}.optionset", def.logical_name, attr.logical_name)),
        "Name": format!("{}_{}", def.logical_name, attr.logical_name),
        "IsGlobal": false,
        "OptionSetType": kind,
        "Options": options,
    })
}
