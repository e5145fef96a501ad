//! Field mappings: the job-file format, every validation rule (the Customer id-only rule on
//! Dataverse-shaped metadata included), conversion of every compatible pair and its failures,
//! digits kept, and derived lookups.

use async_trait::async_trait;
use d365_connector::testkit::entity_metadata_from_dataverse_json;
use d365_connector::{
    DerivedLookup, EntityMetadata, Error, ErrorKind, Field, FieldMapping, Literal, MappingErrors,
    MappingSet, MultipleMatches, Number, Record, RecordFailureKind, TargetField, TargetFieldType,
    TargetLookup, TargetRecord, TargetSchema, TargetValue, ValidatedMapping, Value, Violation,
    ViolationKind, WriteMode,
};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::sync::Mutex;

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");

// ---------------------------------------------------------------------------------------------
// Metadata shaped like Dataverse's
// ---------------------------------------------------------------------------------------------

fn attr(name: &str, attribute_type: &str) -> Json {
    json!({"LogicalName": name, "AttributeType": attribute_type,
           "AttributeTypeName": {"Value": format!("{attribute_type}Type")},
           "IsValidForRead": true, "AttributeOf": null})
}

/// contact, as `EntityDefinitions(LogicalName='contact')` with expanded attributes returns it,
/// plus the real `contact_customer_accounts` relationship taken from the account fixture.
fn contact_metadata() -> EntityMetadata {
    let account: Json = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{REAL}/entitydefinition_account_with_relationships.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let customer_relationship = account["OneToManyRelationships"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["SchemaName"] == "contact_customer_accounts")
        .unwrap()
        .clone();
    let options = |pairs: &[(i64, &str)]| {
        let options: Vec<Json> = pairs
            .iter()
            .map(|(v, l)| json!({"Value": v, "Label": {"LocalizedLabels": [{"Label": l, "LanguageCode": 1033}],
                                                     "UserLocalizedLabel": {"Label": l, "LanguageCode": 1033}}}))
            .collect();
        json!({"Options": options})
    };
    let mut attributes = vec![
        attr("contactid", "Uniqueidentifier"),
        attr("fullname", "String"),
        attr("firstname", "String"),
        attr("emailaddress1", "String"),
        attr("emailaddress2", "String"),
        attr("description", "Memo"),
        attr("numberofchildren", "Integer"),
        attr("versionnumber", "BigInt"),
        attr("annualincome", "Money"),
        attr("exchangerate", "Decimal"),
        attr("address1_latitude", "Double"),
        attr("donotemail", "Boolean"),
        attr("createdon", "DateTime"),
        attr("new_calendarrules", "CalendarRules"),
        attr("owneridtype", "EntityName"),
    ];
    attributes.extend([
        json!({"LogicalName": "parentcustomerid", "AttributeType": "Customer",
               "AttributeTypeName": {"Value": "CustomerType"}, "IsValidForRead": true,
               "AttributeOf": null, "Targets": ["account", "contact"]}),
        json!({"LogicalName": "parentcustomeridname", "AttributeType": "String",
               "AttributeTypeName": {"Value": "StringType"}, "IsValidForRead": true,
               "AttributeOf": "parentcustomerid"}),
        json!({"LogicalName": "parentcustomeridyominame", "AttributeType": "String",
               "AttributeTypeName": {"Value": "StringType"}, "IsValidForRead": true,
               "AttributeOf": "parentcustomerid"}),
        json!({"LogicalName": "parentcustomeridtype", "AttributeType": "EntityName",
               "AttributeTypeName": {"Value": "EntityNameType"}, "IsValidForRead": true,
               "AttributeOf": "parentcustomerid"}),
        json!({"LogicalName": "ownerid", "AttributeType": "Owner",
               "AttributeTypeName": {"Value": "OwnerType"}, "IsValidForRead": true,
               "Targets": ["systemuser", "team"]}),
        json!({"LogicalName": "preferredsystemuserid", "AttributeType": "Lookup",
               "AttributeTypeName": {"Value": "LookupType"}, "IsValidForRead": true,
               "Targets": ["systemuser"]}),
        json!({"LogicalName": "birthdate", "AttributeType": "DateTime",
               "AttributeTypeName": {"Value": "DateTimeType"}, "IsValidForRead": true,
               "DateTimeBehavior": {"Value": "DateOnly"}}),
        json!({"LogicalName": "statecode", "AttributeType": "State",
               "AttributeTypeName": {"Value": "StateType"}, "IsValidForRead": true,
               "OptionSet": options(&[(0, "Active"), (1, "Inactive")])}),
        json!({"LogicalName": "statecodename", "AttributeType": "Virtual",
               "AttributeTypeName": {"Value": "VirtualType"}, "IsValidForRead": true,
               "AttributeOf": "statecode"}),
        json!({"LogicalName": "statuscode", "AttributeType": "Status",
               "AttributeTypeName": {"Value": "StatusType"}, "IsValidForRead": true}),
        json!({"LogicalName": "preferredcontactmethodcode", "AttributeType": "Picklist",
               "AttributeTypeName": {"Value": "PicklistType"}, "IsValidForRead": true,
               "OptionSet": options(&[(1, "Any"), (2, "Email"), (3, "Phone")])}),
        json!({"LogicalName": "new_tags", "AttributeType": "Virtual",
               "AttributeTypeName": {"Value": "MultiSelectPicklistType"}, "IsValidForRead": true}),
        json!({"LogicalName": "entityimage", "AttributeType": "Virtual",
               "AttributeTypeName": {"Value": "ImageType"}, "IsValidForRead": true}),
        json!({"LogicalName": "new_contract", "AttributeType": "Virtual",
               "AttributeTypeName": {"Value": "FileType"}, "IsValidForRead": true}),
        json!({"LogicalName": "new_secret", "AttributeType": "String",
               "AttributeTypeName": {"Value": "StringType"}, "IsValidForRead": false}),
    ]);
    let definition = json!({
        "LogicalName": "contact", "EntitySetName": "contacts", "PrimaryIdAttribute": "contactid",
        "PrimaryNameAttribute": "fullname", "ChangeTrackingEnabled": true,
        "Attributes": attributes,
        "ManyToOneRelationships": [customer_relationship],
    });
    entity_metadata_from_dataverse_json(&definition.to_string()).unwrap()
}

/// The public job-file shape, as a host stores it.
fn person_json(mappings: Json) -> Json {
    json!({
        "target": { "object": "Person",
                    "fields": { "ExternalId": "id", "Email": "string", "CompanyId": "id",
                                "Score": "number", "Since": "date", "Active": "boolean",
                                "Updated": "datetime", "Employees": "integer", "Industry": "string" },
                    "required": ["ExternalId"] },
        "mode": "upsert",
        "identifiers": ["ExternalId"],
        "mappings": mappings
    })
}

fn person(mappings: Json) -> MappingSet {
    serde_json::from_value(person_json(mappings)).unwrap()
}

fn violations(set: &MappingSet) -> Vec<Violation> {
    match set.validate(&contact_metadata()) {
        Ok(_) => panic!("the mapping was accepted"),
        Err(errors) => errors.into_violations(),
    }
}

/// Validates a set with `contactid -> ExternalId` and `extra`; returns its one violation.
fn one_violation(extra: Json) -> Violation {
    let set = person(json!([{ "source": "contactid", "target": "ExternalId" }, extra]));
    let mut found = violations(&set);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.remove(0)
}

fn valid(extra: Json) -> ValidatedMapping {
    person(json!([{ "source": "contactid", "target": "ExternalId" }, extra]))
        .validate(&contact_metadata())
        .unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// The job-file format
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Job {
    name: String,
    #[serde(flatten)]
    mapping: MappingSet,
}

#[test]
fn the_public_job_file_reads_flattened_into_a_job() {
    let mut job_json = person_json(json!([
        { "source": "contactid", "target": "ExternalId" },
        { "source": "parentcustomerid", "target": "CompanyId" },
        { "source": "preferredcontactmethodcode", "target": "Industry", "label": true },
        { "constant": "Dynamics", "target": "Email" },
        { "source": "annualincome", "target": "Score", "default": 0 },
        { "target": "CompanyId",
          "lookup": { "object": "Company", "match": { "DynamicsId": "parentcustomerid" }, "multiple": "any" } }
    ]));
    job_json["name"] = json!("contacts to people");
    let job: Job = serde_json::from_value(job_json).unwrap();
    assert_eq!(job.name, "contacts to people");
    let set = job.mapping;
    assert_eq!(set.mode, WriteMode::Upsert);
    assert_eq!(set.identifiers, ["ExternalId"]);
    assert_eq!(set.target.object, "Person");
    assert_eq!(
        set.target.field("Updated"),
        Some(&TargetField::new(TargetFieldType::DateTime))
    );
    assert!(set.target.is_required("ExternalId"));
    assert_eq!(
        set.mappings[1],
        FieldMapping::source("parentcustomerid", "CompanyId")
    );
    assert_eq!(
        set.mappings[2],
        FieldMapping::source("preferredcontactmethodcode", "Industry").with_label()
    );
    assert_eq!(
        set.mappings[3],
        FieldMapping::constant(Literal::String("Dynamics".into()), "Email")
    );
    assert_eq!(
        set.mappings[4].default,
        Some(Literal::Number(Number::parse("0").unwrap()))
    );
    let lookup = set.mappings[5].lookup.as_ref().unwrap();
    assert_eq!(lookup.object, "Company");
    assert_eq!(lookup.match_fields["DynamicsId"], "parentcustomerid");
    assert_eq!(lookup.multiple, MultipleMatches::Any);
}

#[test]
fn the_format_round_trips_and_keeps_long_form_fields() {
    let text = r#"{"target":{"object":"Person","fields":{"Email":{"type":"string","max_length":80},"ExternalId":"id"},"required":["ExternalId"]},"mode":"insert","mappings":[{"target":"Email","constant":null},{"target":"ExternalId","source":"contactid"}]}"#;
    let set: MappingSet = serde_json::from_str(text).unwrap();
    assert_eq!(
        set.target.field("Email"),
        Some(&TargetField::new(TargetFieldType::String).with_max_length(80))
    );
    // An explicit null constant is a constant, not a missing key.
    assert_eq!(set.mappings[0].constant, Some(Literal::Null));
    assert_eq!(serde_json::to_string(&set).unwrap(), text);
}

#[test]
fn typos_in_the_job_file_are_refused_with_the_valid_choices() {
    let bad_type = json!({"object": "P", "fields": {"A": "strng"}});
    let error = serde_json::from_value::<TargetSchema>(bad_type)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`strng` is not a target field type"),
        "{error}"
    );
    assert!(error.contains("datetime"), "{error}");

    let bad_key = json!({"source": "x", "target": "Y", "lable": true});
    let error = serde_json::from_value::<FieldMapping>(bad_key)
        .unwrap_err()
        .to_string();
    assert!(error.contains("lable"), "{error}");

    let bad_mode =
        json!({"target": {"object": "P", "fields": {}}, "mode": "merge", "mappings": []});
    assert!(serde_json::from_value::<MappingSet>(bad_mode).is_err());
}

// ---------------------------------------------------------------------------------------------
// Validation: each rule
// ---------------------------------------------------------------------------------------------

#[test]
fn a_sound_mapping_validates_and_lists_its_columns() {
    let set = person(json!([
        { "source": "contactid", "target": "ExternalId" },
        { "source": "_parentcustomerid_value", "target": "CompanyId" },
        { "source": "emailaddress1", "target": "Email" },
        { "source": "preferredcontactmethodcode", "target": "Industry", "label": true },
        { "source": "annualincome", "target": "Score" },
        { "source": "birthdate", "target": "Since" },
        { "source": "donotemail", "target": "Active" },
        { "source": "createdon", "target": "Updated" },
        { "source": "numberofchildren", "target": "Employees", "default": 0 }
    ]));
    let mapping = set.validate(&contact_metadata()).unwrap();
    assert_eq!(
        mapping.source_columns(),
        [
            "contactid",
            "parentcustomerid",
            "emailaddress1",
            "preferredcontactmethodcode",
            "annualincome",
            "birthdate",
            "donotemail",
            "createdon",
            "numberofchildren"
        ]
    );
    assert!(mapping.needs_formatted_values());
    assert!(!mapping.needs_lookup_annotations());
    assert_eq!(mapping.mode(), WriteMode::Upsert);
    assert_eq!(mapping.identifiers(), ["ExternalId"]);
    assert_eq!(mapping.target_object(), "Person");
}

#[test]
fn an_unknown_column_is_reported_with_the_nearest_names() {
    let v = one_violation(json!({ "source": "emailadress1", "target": "Email" }));
    assert_eq!(v.kind, ViolationKind::UnknownAttribute);
    assert_eq!(v.mapping, Some(1));
    assert_eq!(v.source.as_deref(), Some("emailadress1"));
    assert_eq!(v.target.as_deref(), Some("Email"));
    assert!(
        v.message
            .contains("did you mean `emailaddress1`, `emailaddress2`?"),
        "{}",
        v.message
    );
    assert!(
        v.message.contains("`contact` has no column"),
        "{}",
        v.message
    );
}

#[test]
fn a_column_not_valid_for_read_is_refused() {
    let v = one_violation(json!({ "source": "new_secret", "target": "Email" }));
    assert_eq!(v.kind, ViolationKind::NotReadable);
    assert!(v.message.contains("not valid for read"), "{}", v.message);
}

#[test]
fn a_generated_companion_is_refused_and_its_parent_named() {
    let v = one_violation(json!({ "source": "statecodename", "target": "Industry" }));
    assert_eq!(v.kind, ViolationKind::GeneratedCompanion);
    assert!(
        v.message.contains("map `statecode` instead"),
        "{}",
        v.message
    );
    assert!(v.message.contains("\"label\": true"), "{}", v.message);
}

#[test]
fn file_image_and_calendar_rules_columns_are_unsupported() {
    for (column, type_name) in [
        ("new_contract", "File"),
        ("entityimage", "Image"),
        ("new_calendarrules", "CalendarRules"),
    ] {
        let v = one_violation(json!({ "source": column, "target": "Email" }));
        assert_eq!(v.kind, ViolationKind::UnsupportedAttribute, "{column}");
        assert!(
            v.message.contains(&format!(
                "{type_name} column, which the connector does not sync"
            )),
            "{}",
            v.message
        );
        assert!(v.message.contains("leave it out"), "{}", v.message);
    }
}

#[test]
fn customer_lookup_maps_by_id_in_both_spellings() {
    for source in ["parentcustomerid", "_parentcustomerid_value"] {
        let mapping = valid(json!({ "source": source, "target": "CompanyId" }));
        assert_eq!(
            mapping.source_columns(),
            ["contactid", "parentcustomerid"],
            "{source}"
        );
    }
    // The real relationship says what the lookup points at.
    let relationship = contact_metadata();
    let relationship = relationship
        .relationship("contact_customer_accounts")
        .unwrap();
    assert_eq!(relationship.referencing_attribute(), "parentcustomerid");
    assert_eq!(relationship.referenced_entity(), "account");
}

#[test]
fn customer_lookup_refuses_every_way_to_reach_the_account_or_contact() {
    for (source, label) in [
        ("parentcustomerid.name", false),
        ("_parentcustomerid_value.name", false),
        ("parentcustomerid/name", false),
        ("parentcustomerid_account/name", false),
        ("parentcustomerid_account.revenue", false),
        ("parentcustomerid_contact/fullname", false),
        ("parentcustomeridname", false),
        ("parentcustomeridyominame", false),
        ("parentcustomeridtype", false),
        ("parentcustomerid", true),
    ] {
        let v = one_violation(json!({ "source": source, "target": "Industry", "label": label }));
        assert_eq!(v.kind, ViolationKind::LookupFieldAccess, "{source}");
        assert!(
            v.message
                .contains("a Customer-type lookup maps by its id only"),
            "{source}: {}",
            v.message
        );
        assert!(
            v.message
                .contains("the account or contact that `parentcustomerid` points at"),
            "{source}: {}",
            v.message
        );
        assert!(
            v.message
                .contains("map `parentcustomerid` itself to an id field"),
            "{source}: {}",
            v.message
        );
    }
}

#[test]
fn customer_rule_holds_when_the_metadata_lists_no_companions() {
    // A metadata document with the lookup only: the companion name is still recognised.
    let metadata = entity_metadata_from_dataverse_json(
        &json!({
            "LogicalName": "contact", "EntitySetName": "contacts", "PrimaryIdAttribute": "contactid",
            "Attributes": [
                attr("contactid", "Uniqueidentifier"),
                {"LogicalName": "parentcustomerid", "AttributeType": "Customer",
                 "Targets": ["account", "contact"]}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let set = person(json!([
        { "source": "contactid", "target": "ExternalId" },
        { "source": "parentcustomeridname", "target": "Industry" }
    ]));
    let errors = set.validate(&metadata).unwrap_err();
    assert_eq!(errors.violations().len(), 1);
    assert_eq!(
        errors.violations()[0].kind,
        ViolationKind::LookupFieldAccess
    );
    assert!(
        errors.violations()[0]
            .message
            .contains("Customer-type lookup maps by its id only")
    );
}

#[test]
fn other_lookups_follow_the_same_id_only_rule() {
    assert!(
        valid(json!({ "source": "ownerid", "target": "CompanyId" }))
            .source_columns()
            .contains(&"ownerid".to_owned())
    );
    for source in [
        "ownerid.fullname",
        "preferredsystemuserid/fullname",
        "preferredsystemuseridname",
    ] {
        let v = one_violation(json!({ "source": source, "target": "Industry" }));
        assert_eq!(v.kind, ViolationKind::LookupFieldAccess, "{source}");
        assert!(
            v.message.contains("lookups map by id only"),
            "{source}: {}",
            v.message
        );
    }
}

#[test]
fn a_path_through_a_plain_column_is_an_unknown_attribute() {
    let v = one_violation(json!({ "source": "fullname.first", "target": "Email" }));
    assert_eq!(v.kind, ViolationKind::UnknownAttribute);
    assert!(v.message.contains("is a path"), "{}", v.message);
}

#[test]
fn incompatible_types_name_the_fields_that_would_fit() {
    let v = one_violation(json!({ "source": "description", "target": "Employees" }));
    assert_eq!(v.kind, ViolationKind::IncompatibleTypes);
    assert_eq!(
        v.message,
        "`description` is a Memo column, which does not convert to an integer field; map it to a string field or choose another column"
    );

    let v = one_violation(json!({ "source": "statecode", "target": "Active", "label": true }));
    assert_eq!(v.kind, ViolationKind::IncompatibleTypes);
    assert!(v.message.contains("is a label"), "{}", v.message);
    assert!(v.message.contains("boolean field"), "{}", v.message);

    let v = one_violation(json!({ "source": "createdon", "target": "Employees" }));
    assert_eq!(v.kind, ViolationKind::IncompatibleTypes);
    assert!(
        v.message.contains("string or date or datetime"),
        "{}",
        v.message
    );
}

#[test]
fn label_on_a_column_without_labels_is_refused() {
    let v = one_violation(json!({ "source": "fullname", "target": "Industry", "label": true }));
    assert_eq!(v.kind, ViolationKind::InvalidMapping);
    assert!(v.message.contains("has no label"), "{}", v.message);
}

#[test]
fn two_mappings_writing_one_field_are_refused() {
    let set = person(json!([
        { "source": "contactid", "target": "ExternalId" },
        { "source": "emailaddress1", "target": "Email" },
        { "source": "emailaddress2", "target": "Email" }
    ]));
    let found = violations(&set);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, ViolationKind::DuplicateTarget);
    assert_eq!(found[0].mapping, Some(2));
    assert!(
        found[0]
            .message
            .contains("mappings[1] already writes `Email`")
    );
}

#[test]
fn a_required_field_left_unmapped_is_refused() {
    let mut set = person(json!([{ "source": "contactid", "target": "ExternalId" }]));
    set.target.required.push("Email".into());
    let found = violations(&set);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, ViolationKind::RequiredFieldUnmapped);
    assert_eq!(found[0].mapping, None);
    assert_eq!(found[0].target.as_deref(), Some("Email"));
}

#[test]
fn an_unmapped_identifier_is_refused() {
    let set = person(json!([{ "source": "emailaddress1", "target": "Email" }]));
    let found = violations(&set);
    // ExternalId is required and the identifier: reported once, as the identifier.
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].kind, ViolationKind::IdentifierUnmapped);
    assert!(
        found[0].message.contains("such as `contactid`"),
        "{}",
        found[0].message
    );
}

#[test]
fn update_and_upsert_need_identifiers_and_insert_does_not() {
    for mode in [WriteMode::Update, WriteMode::Upsert] {
        let mut set = person(json!([{ "source": "contactid", "target": "ExternalId" }]));
        set.mode = mode;
        set.identifiers.clear();
        let found = violations(&set);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, ViolationKind::MissingIdentifier);
    }
    let mut set = person(json!([{ "source": "contactid", "target": "ExternalId" }]));
    set.mode = WriteMode::Insert;
    set.identifiers.clear();
    assert!(set.validate(&contact_metadata()).is_ok());
}

#[test]
fn unknown_target_fields_and_bad_shapes_are_refused() {
    let v = one_violation(json!({ "source": "emailaddress1", "target": "Emial" }));
    assert_eq!(v.kind, ViolationKind::UnknownTargetField);
    assert!(v.message.contains("did you mean `Email`?"), "{}", v.message);

    let v = one_violation(json!({ "source": "emailaddress1", "constant": "x", "target": "Email" }));
    assert_eq!(v.kind, ViolationKind::InvalidMapping);
    assert!(v.message.contains("give exactly one"), "{}", v.message);

    let v = one_violation(json!({ "target": "Email" }));
    assert_eq!(v.kind, ViolationKind::InvalidMapping);

    let v = one_violation(json!({ "constant": "x", "target": "Email", "label": true }));
    assert_eq!(v.kind, ViolationKind::InvalidMapping);
}

#[test]
fn constants_and_defaults_must_fit_the_field() {
    let v = one_violation(json!({ "constant": "many", "target": "Employees" }));
    assert_eq!(v.kind, ViolationKind::InvalidConstant);
    assert!(
        v.message.contains("\"many\" is not a number"),
        "{}",
        v.message
    );

    let v = one_violation(
        json!({ "source": "numberofchildren", "target": "Employees", "default": 1.5 }),
    );
    assert_eq!(v.kind, ViolationKind::InvalidConstant);
    assert!(v.message.contains("has a fraction"), "{}", v.message);

    let v = one_violation(json!({ "constant": true, "target": "Since" }));
    assert_eq!(v.kind, ViolationKind::InvalidConstant);
}

#[test]
fn derived_lookups_are_checked() {
    let seven: BTreeMap<String, String> = (0..7)
        .map(|i| (format!("F{i}"), "emailaddress1".to_owned()))
        .collect();
    let v = one_violation(
        json!({ "target": "CompanyId", "lookup": { "object": "Company", "match": seven } }),
    );
    assert_eq!(v.kind, ViolationKind::InvalidLookup);
    assert!(v.message.contains("between 1 and 6"), "{}", v.message);

    let v = one_violation(json!({ "target": "Score",
        "lookup": { "object": "Company", "match": { "DynamicsId": "parentcustomerid" } } }));
    assert_eq!(v.kind, ViolationKind::IncompatibleTypes);

    let v = one_violation(json!({ "target": "CompanyId",
        "lookup": { "object": "Company", "match": { "Name": "parentcustomeridname" } } }));
    assert_eq!(v.kind, ViolationKind::LookupFieldAccess);
    assert!(
        v.message.starts_with("in lookup.match.Name:"),
        "{}",
        v.message
    );
}

#[test]
fn five_different_mistakes_give_exactly_five_violations() {
    let set = person(json!([
        { "source": "contactid", "target": "ExternalId" },
        { "source": "emailadress1", "target": "Email" },               // 1. unknown column
        { "source": "parentcustomeridname", "target": "Industry" },    // 2. Customer rule
        { "source": "description", "target": "Employees" },            // 3. Memo into integer
        { "source": "fullname", "target": "ExternalId" }                // 4. second writer
    ]));
    let mut set = set;
    set.target.required.push("Since".into()); // 5. required, unmapped
    let errors = set.validate(&contact_metadata()).unwrap_err();
    let kinds: Vec<_> = errors
        .violations()
        .iter()
        .map(|v| (v.kind, v.mapping))
        .collect();
    assert_eq!(
        kinds,
        [
            (ViolationKind::UnknownAttribute, Some(1)),
            (ViolationKind::LookupFieldAccess, Some(2)),
            (ViolationKind::IncompatibleTypes, Some(3)),
            (ViolationKind::DuplicateTarget, Some(4)),
            (ViolationKind::RequiredFieldUnmapped, None),
        ]
    );
    // Every violation names the field.
    for violation in errors.violations() {
        assert!(violation.target.is_some(), "{violation}");
    }
    assert_eq!(
        errors.violations()[0].to_string(),
        format!(
            "mappings[1] (`emailadress1` -> `Email`): {}",
            errors.violations()[0].message
        )
    );

    // As the crate's error: kind Mapping, the violations still reachable.
    let error: Error = errors.clone().into();
    assert_eq!(error.kind(), ErrorKind::Mapping);
    assert!(error.to_string().contains("5 violations"), "{error}");
    assert_eq!(MappingErrors::from_error(&error), Some(&errors));
    let listed = std::error::Error::source(&error).unwrap().to_string();
    assert_eq!(listed.lines().count(), 6, "{listed}");
}

// ---------------------------------------------------------------------------------------------
// Conversion
// ---------------------------------------------------------------------------------------------

fn number(literal: &str) -> Value {
    Value::Number(Number::parse(literal).unwrap())
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// Converts one value of `column` into a field of type `target` through a one-field mapping.
async fn convert_one(
    column: &str,
    field: Field,
    target: TargetField,
    read: &str,
) -> std::result::Result<Json, String> {
    let mut mapping = FieldMapping::source(column, "Out");
    match read {
        "label" => mapping = mapping.with_label(),
        "table" => mapping = mapping.with_lookup_table(),
        _ => {}
    }
    let set = MappingSet {
        target: TargetSchema::new("T").with_field("Out", target),
        mode: WriteMode::Insert,
        identifiers: vec![],
        mappings: vec![mapping],
    };
    let validated = set
        .validate(&contact_metadata())
        .unwrap_or_else(|e| panic!("{column} -> {:?}: {e}", target.field_type));
    let mut record = Record::new("00000000-0000-0000-0000-000000000010");
    record.insert(column, field);
    match validated.convert(&record, None).await {
        Ok(out) => Ok(serde_json::to_value(&out).unwrap()["Out"].clone()),
        Err(failure) => {
            assert_eq!(failure.record_id, "00000000-0000-0000-0000-000000000010");
            assert_eq!(failure.field, "Out");
            assert_eq!(failure.source.as_deref(), Some(column));
            assert_eq!(failure.kind, RecordFailureKind::Conversion);
            Err(failure.reason)
        }
    }
}

fn plain(value: Value) -> Field {
    Field::new(value)
}

fn labelled(value: Value, label: &str) -> Field {
    let mut field = Field::new(value);
    field.formatted = Some(label.to_owned());
    field
}

fn of(field_type: TargetFieldType) -> TargetField {
    TargetField::new(field_type)
}

#[tokio::test]
async fn every_compatible_pair_converts() {
    use TargetFieldType::*;
    let guid = "00000000-0000-0000-0000-000000000020";
    let cases: Vec<(&str, Field, TargetFieldType, &str, Json)> = vec![
        // String
        (
            "emailaddress1",
            plain(text("a@b.c")),
            String,
            "",
            json!("a@b.c"),
        ),
        (
            "emailaddress1",
            plain(text("EXT-1")),
            Id,
            "",
            json!("EXT-1"),
        ),
        // Memo, EntityName
        (
            "description",
            plain(text("line\n2")),
            String,
            "",
            json!("line\n2"),
        ),
        (
            "owneridtype",
            plain(text("systemuser")),
            String,
            "",
            json!("systemuser"),
        ),
        // Integer, BigInt
        (
            "numberofchildren",
            plain(number("3")),
            String,
            "",
            json!("3"),
        ),
        (
            "numberofchildren",
            plain(number("3")),
            Integer,
            "",
            json!(3),
        ),
        ("numberofchildren", plain(number("3")), Number, "", json!(3)),
        (
            "versionnumber",
            plain(number("9223372036854775807")),
            Integer,
            "",
            json!(9223372036854775807i64),
        ),
        // Decimal, Money, Double
        (
            "annualincome",
            plain(number("1234.5600000000")),
            String,
            "",
            json!("1234.5600000000"),
        ),
        (
            "annualincome",
            plain(number("5000000.0000000000")),
            Integer,
            "",
            json!(5000000),
        ),
        (
            "exchangerate",
            plain(number("1.000000000000")),
            Number,
            "",
            json!(1.0),
        ),
        (
            "address1_latitude",
            plain(number("47.63")),
            Number,
            "",
            json!(47.63),
        ),
        // Boolean
        (
            "donotemail",
            plain(Value::Bool(false)),
            Boolean,
            "",
            json!(false),
        ),
        (
            "donotemail",
            plain(Value::Bool(true)),
            String,
            "",
            json!("true"),
        ),
        (
            "donotemail",
            labelled(Value::Bool(false), "Allow"),
            String,
            "label",
            json!("Allow"),
        ),
        // DateTime
        (
            "createdon",
            plain(text("2024-06-12T14:13:25Z")),
            DateTime,
            "",
            json!("2024-06-12T14:13:25Z"),
        ),
        (
            "createdon",
            plain(text("2024-06-12T23:30:00-02:00")),
            Date,
            "",
            json!("2024-06-13"),
        ),
        (
            "createdon",
            plain(text("2024-06-12T14:13:25Z")),
            String,
            "",
            json!("2024-06-12T14:13:25Z"),
        ),
        // DateTime, DateOnly
        (
            "birthdate",
            plain(text("2024-04-10")),
            Date,
            "",
            json!("2024-04-10"),
        ),
        (
            "birthdate",
            plain(text("2024-04-10")),
            DateTime,
            "",
            json!("2024-04-10T00:00:00Z"),
        ),
        (
            "birthdate",
            plain(text("2024-04-10")),
            String,
            "",
            json!("2024-04-10"),
        ),
        // Picklist, State, Status
        (
            "preferredcontactmethodcode",
            plain(number("2")),
            Integer,
            "",
            json!(2),
        ),
        ("statuscode", plain(number("1")), Number, "", json!(1)),
        ("statecode", plain(number("0")), String, "", json!("0")),
        (
            "preferredcontactmethodcode",
            labelled(number("2"), "Email"),
            String,
            "label",
            json!("Email"),
        ),
        // Labels fall back on the fetched option labels when no formatted value came.
        (
            "statecode",
            plain(number("1")),
            String,
            "label",
            json!("Inactive"),
        ),
        // MultiSelectPicklist
        ("new_tags", plain(text("1,3")), String, "", json!("1,3")),
        (
            "new_tags",
            labelled(text("1,3"), "Red; Blue"),
            String,
            "label",
            json!("Red; Blue"),
        ),
        // Uniqueidentifier
        ("contactid", plain(text(guid)), Id, "", json!(guid)),
        ("contactid", plain(text(guid)), String, "", json!(guid)),
        // Lookup, Customer, Owner
        ("parentcustomerid", plain(text(guid)), Id, "", json!(guid)),
        ("ownerid", plain(text(guid)), String, "", json!(guid)),
        (
            "preferredsystemuserid",
            plain(text(guid)),
            Id,
            "",
            json!(guid),
        ),
        (
            "parentcustomerid",
            Field {
                value: text(guid),
                formatted: None,
                lookup_entity: Some("account".into()),
            },
            String,
            "table",
            json!("account"),
        ),
        // A lookup with one target needs no annotation to name its table.
        (
            "preferredsystemuserid",
            plain(text(guid)),
            String,
            "table",
            json!("systemuser"),
        ),
        // Null stays null in every field type.
        ("emailaddress1", plain(Value::Null), String, "", Json::Null),
        ("annualincome", plain(Value::Null), Number, "", Json::Null),
    ];
    for (column, field, target, read, expected) in cases {
        let got = convert_one(column, field, of(target), read).await;
        assert_eq!(got, Ok(expected), "{column} ({read}) -> {target:?}");
    }
}

#[tokio::test]
async fn values_that_do_not_convert_fail_with_the_reason() {
    use TargetFieldType::*;
    let cases: Vec<(&str, Field, TargetField, &str, &str)> = vec![
        (
            "emailaddress1",
            plain(text("abcdef")),
            of(String).with_max_length(5),
            "",
            "6 characters long and the field holds at most 5",
        ),
        (
            "fullname",
            plain(text("Zoë Åström")),
            of(String).with_max_length(9),
            "",
            "10 characters long",
        ),
        (
            "annualincome",
            plain(number("12.5")),
            of(Integer),
            "",
            "has a fraction",
        ),
        (
            "annualincome",
            plain(number("922337203685477580700")),
            of(Integer),
            "",
            "out of range for an integer field",
        ),
        (
            "address1_latitude",
            plain(number("1e3")),
            of(Integer),
            "",
            "exponent form",
        ),
        (
            "createdon",
            plain(text("12/06/2024 14:13")),
            of(DateTime),
            "",
            "is not a date and time",
        ),
        (
            "birthdate",
            plain(text("2024-02-30")),
            of(Date),
            "",
            "is not a date (YYYY-MM-DD",
        ),
        (
            "numberofchildren",
            plain(text("three")),
            of(Integer),
            "",
            "holds the text \"three\", not a number",
        ),
        (
            "donotemail",
            plain(number("1")),
            of(Boolean),
            "",
            "not true or false",
        ),
        (
            "emailaddress1",
            plain(Value::Json("[1]".into())),
            of(String),
            "",
            "a JSON array or object",
        ),
        (
            "preferredcontactmethodcode",
            plain(number("9")),
            of(String),
            "label",
            "no label came with `preferredcontactmethodcode`",
        ),
        (
            "parentcustomerid",
            plain(text("x")),
            of(String),
            "table",
            "request the Microsoft.Dynamics.CRM.lookuplogicalname annotation",
        ),
        (
            "preferredcontactmethodcode",
            labelled(number("2"), "Email"),
            of(String).with_max_length(3),
            "label",
            "5 characters long",
        ),
    ];
    for (column, field, target, read, expected) in cases {
        let reason = convert_one(column, field, target, read)
            .await
            .expect_err(column);
        assert!(reason.contains(expected), "{column}: {reason}");
    }
}

#[tokio::test]
async fn a_failing_record_does_not_stop_the_page() {
    let mapping = valid(json!({ "source": "annualincome", "target": "Employees" }));
    let page: Vec<Record> = ["1000", "12.5", "7.0000"]
        .iter()
        .enumerate()
        .map(|(i, income)| {
            let mut record = Record::new(format!("id-{i}"));
            record.insert("contactid", plain(text(&format!("id-{i}"))));
            record.insert("annualincome", plain(number(income)));
            record
        })
        .collect();
    let mut written = Vec::new();
    let mut failed = Vec::new();
    for record in &page {
        match mapping.convert(record, None).await {
            Ok(out) => written.push(serde_json::to_string(&out).unwrap()),
            Err(failure) => failed.push(failure),
        }
    }
    assert_eq!(
        written,
        [
            r#"{"ExternalId":"id-0","Employees":1000}"#,
            r#"{"ExternalId":"id-2","Employees":7}"#
        ]
    );
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].record_id, "id-1");
    assert_eq!(failed[0].field, "Employees");
    assert_eq!(failed[0].source.as_deref(), Some("annualincome"));
    // Serde form for the job's failure report.
    let json = serde_json::to_value(&failed[0]).unwrap();
    assert_eq!(json["record_id"], "id-1");
    assert_eq!(json["kind"], "conversion");
    let error: Error = failed[0].clone().into();
    assert_eq!(error.kind(), ErrorKind::Mapping);
}

#[tokio::test]
async fn required_fields_and_identifiers_need_a_value_in_each_record() {
    let mapping = valid(json!({ "source": "emailaddress1", "target": "Email" }));
    let mut record = Record::new("r1");
    record.insert("contactid", plain(Value::Null));
    let failure = mapping.convert(&record, None).await.unwrap_err();
    assert_eq!(failure.kind, RecordFailureKind::Required);
    assert_eq!(failure.field, "ExternalId");
    assert!(
        failure.reason.contains("an identifier"),
        "{}",
        failure.reason
    );
}

#[tokio::test]
async fn constants_and_defaults_are_written() {
    let set = person(json!([
        { "source": "contactid", "target": "ExternalId" },
        { "constant": "Dynamics", "target": "Industry" },
        { "constant": "12345678901234567.89", "target": "Score" },
        { "constant": "2024-01-31", "target": "Since" },
        { "source": "numberofchildren", "target": "Employees", "default": 0 },
        { "source": "donotemail", "target": "Active", "default": true }
    ]));
    let mapping = set.validate(&contact_metadata()).unwrap();
    let mut record = Record::new("r1");
    record.insert("contactid", plain(text("r1")));
    record.insert("numberofchildren", plain(Value::Null));
    let out = mapping.convert(&record, None).await.unwrap();
    assert_eq!(
        serde_json::to_string(&out).unwrap(),
        r#"{"ExternalId":"r1","Industry":"Dynamics","Score":12345678901234567.89,"Since":"2024-01-31","Employees":0,"Active":true}"#
    );
    assert_eq!(
        serde_json::to_string(&mapping.identifier_key(&out)).unwrap(),
        r#"{"ExternalId":"r1"}"#
    );
}

/// Numbers read from `literal` and written to a number field come out with the same digits.
async fn roundtrip_number(mapping: &ValidatedMapping, column: &str, literal: &str) -> String {
    let mut record = Record::new("r");
    record.insert("contactid", plain(text("r")));
    record.insert(column, plain(number(literal)));
    let out = mapping.convert(&record, None).await.unwrap();
    let json = serde_json::to_string(&out).unwrap();
    json.strip_prefix(r#"{"ExternalId":"r","Score":"#)
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{json}"))
        .to_owned()
}

#[tokio::test]
async fn converting_and_writing_a_number_never_changes_its_digits() {
    let money = valid(json!({ "source": "annualincome", "target": "Score" }));
    let bigint = valid(json!({ "source": "versionnumber", "target": "Score" }));
    let table = [
        "922337203685477.5807",
        "-922337203685477.5808",
        "5000000.0000000000",
        "1.000000000000",
        "0.0000000001",
        "9007199254740993",
        "0",
        "-0.5",
        "123456789012345678901234567890.123456789",
    ];
    for literal in table {
        assert_eq!(
            roundtrip_number(&money, "annualincome", literal).await,
            literal
        );
    }
    // Generated: many random literals with up to 19 integer and 10 fractional digits.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for _ in 0..500 {
        let mut literal = String::new();
        if next(2) == 0 {
            literal.push('-');
        }
        let whole_digits = 1 + next(19);
        literal.push(char::from(b'1' + next(9) as u8));
        for _ in 1..whole_digits {
            literal.push(char::from(b'0' + next(10) as u8));
        }
        let fraction_digits = next(11);
        if fraction_digits > 0 {
            literal.push('.');
            for _ in 0..fraction_digits {
                literal.push(char::from(b'0' + next(10) as u8));
            }
        }
        assert_eq!(
            roundtrip_number(&money, "annualincome", &literal).await,
            literal
        );
        if fraction_digits == 0 && literal.parse::<i64>().is_ok() {
            assert_eq!(
                roundtrip_number(&bigint, "versionnumber", &literal).await,
                literal
            );
        }
    }
}

/// The real contact record, decoded the way the source layer does: lookups by logical name,
/// numbers verbatim.
fn real_contact() -> Record {
    let text = std::fs::read_to_string(format!("{REAL}/contact_record.json")).unwrap();
    let raw: BTreeMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(&text).unwrap();
    let mut record = Record::new(serde_json::from_str::<String>(raw["contactid"].get()).unwrap());
    for (key, value) in &raw {
        if key.contains('@') {
            continue;
        }
        let name = key
            .strip_prefix('_')
            .and_then(|k| k.strip_suffix("_value"))
            .unwrap_or(key);
        let json: Json = serde_json::from_str(value.get()).unwrap();
        let value = match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(_) => Value::Number(Number::parse(value.get()).unwrap()),
            Json::String(s) => Value::String(s),
            _ => Value::Json(value.get().to_owned()),
        };
        record.insert(name, Field::new(value));
    }
    record
}

#[tokio::test]
async fn the_real_contact_record_converts() {
    let set = person(json!([
        { "source": "contactid", "target": "ExternalId" },
        { "source": "emailaddress1", "target": "Email" },
        { "source": "_parentcustomerid_value", "target": "CompanyId" },
        { "source": "annualincome", "target": "Score" },
        { "source": "birthdate", "target": "Since" },
        { "source": "donotemail", "target": "Active" },
        { "source": "createdon", "target": "Updated" },
        { "source": "numberofchildren", "target": "Employees" }
    ]));
    let mapping = set.validate(&contact_metadata()).unwrap();
    let out = mapping.convert(&real_contact(), None).await.unwrap();
    assert_eq!(
        serde_json::to_string(&out).unwrap(),
        r#"{"ExternalId":"00000000-0000-0000-0000-000000000010","Email":"johndoe@contoso.com","CompanyId":"00000000-0000-0000-0000-000000000020","Score":1234.5600000000,"Since":"2024-04-10","Active":false,"Updated":"2024-06-12T14:13:17Z","Employees":null}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Derived mappings
// ---------------------------------------------------------------------------------------------

/// Companies by their stored Dynamics id; records every query.
#[derive(Debug, Default)]
struct Companies {
    by_dynamics_id: Vec<(String, String)>,
    queries: Mutex<Vec<(String, String)>>,
    broken: bool,
}

#[async_trait]
impl TargetLookup for Companies {
    async fn find_ids(
        &self,
        object: &str,
        criteria: &TargetRecord,
    ) -> d365_connector::Result<Vec<String>> {
        self.queries
            .lock()
            .unwrap()
            .push((object.to_owned(), serde_json::to_string(criteria).unwrap()));
        if self.broken {
            return Err(d365_connector::Error::new(
                d365_connector::ErrorKind::Lookup,
                "the company store is offline",
            ));
        }
        let wanted = criteria.get("DynamicsId").and_then(TargetValue::as_str);
        Ok(self
            .by_dynamics_id
            .iter()
            .filter(|(dynamics_id, _)| Some(dynamics_id.as_str()) == wanted)
            .map(|(_, id)| id.clone())
            .collect())
    }
}

fn derived(multiple: &str) -> ValidatedMapping {
    valid(json!({ "target": "CompanyId",
        "lookup": { "object": "Company", "match": { "DynamicsId": "parentcustomerid" }, "multiple": multiple } }))
}

fn contact_of(account: Option<&str>) -> Record {
    let mut record = Record::new("c1");
    record.insert("contactid", plain(text("c1")));
    record.insert(
        "parentcustomerid",
        plain(account.map(text).unwrap_or(Value::Null)),
    );
    record
}

const ACME: &str = "00000000-0000-0000-0000-0000000000a1";

#[tokio::test]
async fn a_derived_mapping_writes_the_matching_records_id() {
    let companies = Companies {
        by_dynamics_id: vec![(ACME.into(), "company-7".into())],
        ..Default::default()
    };
    let mapping = derived("fail");
    assert_eq!(mapping.source_columns(), ["contactid", "parentcustomerid"]);
    let out = mapping
        .convert(&contact_of(Some(ACME)), Some(&companies))
        .await
        .unwrap();
    assert_eq!(
        out.get("CompanyId"),
        Some(&TargetValue::Id("company-7".into()))
    );
    assert_eq!(
        companies.queries.lock().unwrap().as_slice(),
        [(
            "Company".to_owned(),
            format!(r#"{{"DynamicsId":"{ACME}"}}"#)
        )]
    );

    // No match: null. A null match value: no query at all.
    let out = mapping
        .convert(&contact_of(Some("unknown")), Some(&companies))
        .await
        .unwrap();
    assert_eq!(out.get("CompanyId"), Some(&TargetValue::Null));
    let out = mapping
        .convert(&contact_of(None), Some(&companies))
        .await
        .unwrap();
    assert_eq!(out.get("CompanyId"), Some(&TargetValue::Null));
    assert_eq!(companies.queries.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn several_matches_follow_the_policy() {
    let companies = Companies {
        by_dynamics_id: vec![
            (ACME.into(), "company-1".into()),
            (ACME.into(), "company-2".into()),
        ],
        ..Default::default()
    };
    let out = derived("any")
        .convert(&contact_of(Some(ACME)), Some(&companies))
        .await
        .unwrap();
    assert_eq!(
        out.get("CompanyId"),
        Some(&TargetValue::Id("company-1".into()))
    );

    let failure = derived("fail")
        .convert(&contact_of(Some(ACME)), Some(&companies))
        .await
        .unwrap_err();
    assert_eq!(failure.kind, RecordFailureKind::MultipleMatches);
    assert_eq!(failure.record_id, "c1");
    assert_eq!(failure.field, "CompanyId");
    assert!(
        failure.reason.contains("\"multiple\": \"any\""),
        "{}",
        failure.reason
    );
}

#[tokio::test]
async fn a_missing_or_failing_lookup_fails_the_record() {
    let failure = derived("fail")
        .convert(&contact_of(Some(ACME)), None)
        .await
        .unwrap_err();
    assert_eq!(failure.kind, RecordFailureKind::Lookup);
    assert!(
        failure.reason.contains("no TargetLookup"),
        "{}",
        failure.reason
    );

    let broken = Companies {
        broken: true,
        ..Default::default()
    };
    let failure = derived("fail")
        .convert(&contact_of(Some(ACME)), Some(&broken))
        .await
        .unwrap_err();
    assert_eq!(failure.kind, RecordFailureKind::Lookup);
    assert_eq!(
        failure.reason,
        "the lookup of `Company` failed: the company store is offline"
    );
}

#[tokio::test]
async fn a_derived_mapping_built_in_code_matches_up_to_six_fields() {
    let lookup = DerivedLookup {
        object: "Company".into(),
        match_fields: [
            ("DynamicsId", "parentcustomerid"),
            ("Email", "emailaddress1"),
            ("Since", "birthdate"),
            ("Score", "annualincome"),
            ("Active", "donotemail"),
            ("Kind", "statecode"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect(),
        multiple: MultipleMatches::Fail,
    };
    let set = MappingSet {
        target: TargetSchema::new("Person").with_field("CompanyId", of(TargetFieldType::Id)),
        mode: WriteMode::Insert,
        identifiers: vec![],
        mappings: vec![FieldMapping::derived(lookup, "CompanyId")],
    };
    let mapping = set.validate(&contact_metadata()).unwrap();
    let mut record = contact_of(Some(ACME));
    record.insert("emailaddress1", plain(text("a@b.c")));
    record.insert("birthdate", plain(text("2024-04-10")));
    record.insert("annualincome", plain(number("10.50")));
    record.insert("donotemail", plain(Value::Bool(true)));
    record.insert("statecode", plain(number("0")));
    let companies = Companies::default();
    mapping.convert(&record, Some(&companies)).await.unwrap();
    assert_eq!(
        companies.queries.lock().unwrap()[0].1,
        format!(
            r#"{{"Active":true,"DynamicsId":"{ACME}","Email":"a@b.c","Kind":0,"Score":10.50,"Since":"2024-04-10"}}"#
        )
    );
}

#[test]
fn a_target_record_reads_back_from_its_json_and_hashes_as_it_compares() {
    let mut record = TargetRecord::new();
    record.insert("Name", TargetValue::String("Contoso".to_owned()));
    record.insert(
        "Revenue",
        TargetValue::Number(Number::parse("5000000.25").unwrap()),
    );
    record.insert("Active", TargetValue::Bool(true));
    record.insert("ParentId", TargetValue::Null);

    let back: TargetRecord =
        serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();

    assert_eq!(back, record);
    let distinct: std::collections::HashSet<TargetRecord> = [record.clone(), back].into();
    assert_eq!(distinct.len(), 1);
    // JSON does not tell an id from text: an id reads back as a string.
    let mut key = TargetRecord::new();
    key.insert("DynamicsId", TargetValue::Id("a1".to_owned()));
    let read: TargetRecord = serde_json::from_value(serde_json::to_value(&key).unwrap()).unwrap();
    assert_eq!(
        read.get("DynamicsId"),
        Some(&TargetValue::String("a1".to_owned()))
    );
    let error = serde_json::from_str::<TargetRecord>("[1]").unwrap_err();
    assert!(
        error.to_string().contains("an object of field names"),
        "{error}"
    );
}

#[test]
fn an_attribute_type_displays_as_dataverse_names_it() {
    use d365_connector::AttributeType;
    assert_eq!(AttributeType::Customer.to_string(), "Customer");
    assert_eq!(
        AttributeType::MultiSelectPicklist.to_string(),
        "MultiSelectPicklist"
    );
    assert_eq!(
        AttributeType::Other("Exotic".to_owned()).to_string(),
        "Exotic"
    );
}
