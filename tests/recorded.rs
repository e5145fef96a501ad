//! Responses recorded from real Dataverse environments (`tests/fixtures/real/tf_*.json`, from
//! Microsoft's terraform-provider-power-platform tests, MIT), parsed as they are: one test per
//! file, each asserting what a caller reads out of it.

use d365_connector::testkit::{
    attributes_from_dataverse_json, entity_metadata_from_dataverse_json,
};
use d365_connector::{
    AccessToken, AttributeMetadata, AttributeType, ClientOptions, Connection, DataverseClient,
    EntityMetadata, ErrorKind, Record, RecordChange, RecordDecoder, RetryPolicy,
    StaticTokenAuthorizer, Value, who_am_i,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");

fn real(name: &str) -> String {
    std::fs::read_to_string(format!("{REAL}/{name}")).unwrap()
}

/// A table built by hand: the metadata a caller would have fetched for it.
fn table(
    logical_name: &str,
    entity_set_name: &str,
    columns: &[(&str, AttributeType)],
) -> EntityMetadata {
    columns.iter().fold(
        EntityMetadata::new(logical_name, entity_set_name, format!("{logical_name}id")),
        |metadata, (name, kind)| {
            metadata.with_attribute(AttributeMetadata::new(*name, kind.clone()))
        },
    )
}

/// A recorded definition with a recorded attribute list merged in.
fn recorded_table(definition: &str, attributes: &str) -> EntityMetadata {
    let definition = entity_metadata_from_dataverse_json(&real(definition)).unwrap();
    attributes_from_dataverse_json(&real(attributes))
        .unwrap()
        .into_iter()
        .fold(definition, EntityMetadata::with_attribute)
}

fn record(metadata: EntityMetadata, file: &str) -> Record {
    RecordDecoder::new(metadata)
        .decode_record(real(file).as_bytes())
        .unwrap()
}

fn records(metadata: EntityMetadata, file: &str) -> Vec<Record> {
    RecordDecoder::new(metadata)
        .decode_changes(real(file).as_bytes())
        .unwrap()
        .into_iter()
        .map(|change| match change {
            RecordChange::Upsert(record) => record,
            RecordChange::Delete { id } => panic!("unexpected delete of {id}"),
        })
        .collect()
}

fn value<'r>(record: &'r Record, name: &str) -> &'r Value {
    &record
        .get(name)
        .unwrap_or_else(|| panic!("no field `{name}`"))
        .value
}

fn text<'r>(record: &'r Record, name: &str) -> &'r str {
    value(record, name)
        .as_str()
        .unwrap_or_else(|| panic!("`{name}` is not a string"))
}

fn number<'r>(record: &'r Record, name: &str) -> &'r str {
    match value(record, name) {
        Value::Number(n) => n.as_str(),
        other => panic!("`{name}` is not a number: {other:?}"),
    }
}

fn system_user() -> EntityMetadata {
    table(
        "systemuser",
        "systemusers",
        &[("businessunitid", AttributeType::Lookup)],
    )
}

fn role() -> EntityMetadata {
    table(
        "role",
        "roles",
        &[("businessunitid", AttributeType::Lookup)],
    )
}

fn contact() -> EntityMetadata {
    table(
        "contact",
        "contacts",
        &[
            ("parentcustomerid", AttributeType::Customer),
            ("ownerid", AttributeType::Owner),
            ("accountid", AttributeType::Lookup),
        ],
    )
}

#[test]
fn every_recorded_file_is_credited_in_sources() {
    let sources = real("SOURCES-tf.txt");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(REAL).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("tf_") {
            assert!(
                sources.contains(&format!("{name} <- ")),
                "{name} not in SOURCES"
            );
            files.push(name);
        }
    }
    assert_eq!(files.len(), 15);
    assert!(real("LICENSE-terraform-provider-power-platform").contains("MIT License"));
}

#[test]
fn businessunit_definition_names_the_table_and_its_primary_columns() {
    let unit =
        entity_metadata_from_dataverse_json(&real("tf_get_entitydefinition_businessunit.json"))
            .unwrap();
    assert_eq!(unit.logical_name(), "businessunit");
    assert_eq!(unit.entity_set_name(), "businessunits");
    assert_eq!(unit.primary_id_attribute(), "businessunitid");
    assert_eq!(unit.primary_name_attribute(), Some("name"));
    assert!(unit.change_tracking_enabled());
    assert!(unit.attributes().is_empty(), "fetched without Attributes");
}

#[test]
fn businessunit_attribute_list_has_its_92_columns_typed_by_their_casts() {
    let attributes = attributes_from_dataverse_json(&real(
        "tf_get_entitydefinition_businessunit_attributes.json",
    ))
    .unwrap();
    assert_eq!(attributes.len(), 92);
    let names: BTreeSet<&str> = attributes.iter().map(|a| a.logical_name()).collect();
    assert_eq!(names.len(), 92, "each column once");
    let of_type = |kind: AttributeType| {
        attributes
            .iter()
            .filter(|a| a.attribute_type() == &kind)
            .map(|a| a.logical_name())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of_type(AttributeType::Lookup),
        [
            "calendarid",
            "createdby",
            "createdonbehalfby",
            "modifiedby",
            "modifiedonbehalfby",
            "organizationid",
            "parentbusinessunitid",
            "transactioncurrencyid"
        ]
    );
    assert_eq!(of_type(AttributeType::Decimal), ["exchangerate"]);
    assert_eq!(of_type(AttributeType::BigInt), ["versionnumber"]);
    // Ten entries carry no cast (only LogicalName was selected): their type is not guessed.
    assert_eq!(of_type(AttributeType::Other("Unknown".into())).len(), 10);
}

#[test]
fn businessunit_record_decodes_with_its_recorded_metadata() {
    let metadata = recorded_table(
        "tf_get_entitydefinition_businessunit.json",
        "tf_get_entitydefinition_businessunit_attributes.json",
    );
    let unit = record(
        metadata,
        "tf_get_businessunit_00000000-0000-0000-0000-000000000001.json",
    );
    assert_eq!(unit.id(), "00000000-0000-0000-0000-000000000001");
    assert_eq!(text(&unit, "name"), "test");
    assert_eq!(number(&unit, "inheritancemask"), "1023");
    assert_eq!(value(&unit, "isdisabled"), &Value::Bool(false));
    assert_eq!(text(&unit, "createdon"), "2023-02-11T20:38:05Z");
    assert_eq!(value(&unit, "websiteurl"), &Value::Null);
    // A String column by its metadata, a number in the recorded row: kept as sent.
    assert_eq!(number(&unit, "costcenter"), "123");
    assert_eq!(
        text(&unit, "organizationid"),
        "6450637c-f9a8-4988-8cf7-b03723d51ab7"
    );
    assert_eq!(value(&unit, "parentbusinessunitid"), &Value::Null);
    // 76 properties less `@odata.context` and `@odata.etag`: nothing dropped.
    assert_eq!(unit.fields().count(), 74);
}

#[test]
fn mailbox_definition_names_the_table_and_its_primary_columns() {
    let mailbox =
        entity_metadata_from_dataverse_json(&real("tf_get_entitydefinition_mailbox.json")).unwrap();
    assert_eq!(mailbox.logical_name(), "mailbox");
    assert_eq!(mailbox.entity_set_name(), "mailboxes");
    assert_eq!(mailbox.primary_id_attribute(), "mailboxid");
    assert_eq!(mailbox.primary_name_attribute(), Some("name"));
    assert!(mailbox.change_tracking_enabled());
}

#[test]
fn mailbox_record_keeps_its_placeholder_id_and_reads_the_owner_lookup() {
    let metadata = recorded_table(
        "tf_get_entitydefinition_mailbox.json",
        "entitydefinition_mailbox_attributes.json",
    );
    let mailbox = record(
        metadata,
        "tf_get_mailbox_00000000-0000-0000-0000-000000000010.json",
    );
    // The recording replaced the GUID by a placeholder; the id is kept as sent.
    assert_eq!(
        mailbox.id(),
        "get_contact_00000000-0000-0000-0000-000000000010"
    );
    assert_eq!(text(&mailbox, "name"), "contoso");
    assert_eq!(text(&mailbox, "emailaddress"), "contoso@contoso.com");
    // Typed as lookups by their `@odata.type` casts: read by their logical names.
    assert_eq!(
        text(&mailbox, "ownerid"),
        "f835f2ac-7c7d-ef11-ac20-7c1e5215c3f3"
    );
    assert_eq!(
        text(&mailbox, "owningbusinessunit"),
        "7c2ef2ac-7c7d-ef11-ac20-7c1e5215c3f3"
    );
    assert_eq!(value(&mailbox, "regardingobjectid"), &Value::Null);
    assert_eq!(number(&mailbox, "emailrouteraccessapproval"), "1");
    assert_eq!(
        text(&mailbox, "postponesendinguntil"),
        "1900-01-01T00:00:00Z"
    );
}

#[test]
fn system_users_collection_holds_one_user_with_its_business_unit_and_roles() {
    let users = records(system_user(), "tf_get_systemusers.json");
    assert_eq!(users.len(), 1);
    let user = &users[0];
    assert_eq!(user.id(), "00000000-0000-0000-0000-000000000002");
    assert_eq!(text(user, "domainname"), "jdoe@contoso.onmicrosoft.com");
    assert_eq!(
        text(user, "businessunitid"),
        "1360fdcb-b6e1-ee11-904c-002248dad9c1"
    );
    // The expanded many-to-many roles stay one JSON value, not records or fields.
    let Value::Json(roles) = value(user, "systemuserroles_association") else {
        panic!("the roles are not kept as JSON");
    };
    let roles: serde_json::Value = serde_json::from_str(roles).unwrap();
    assert_eq!(roles[0]["name"], "Environment Maker");
}

#[test]
fn system_user_record_is_the_row_of_the_collection() {
    let user = record(
        system_user(),
        "tf_get_systemuser_00000000-0000-0000-0000-000000000002.json",
    );
    assert_eq!(text(&user, "fullname"), "# Joh Doe");
    assert_eq!(text(&user, "firstname"), "#");
    assert_eq!(value(&user, "isdisabled"), &Value::Bool(false));
    let row = &records(system_user(), "tf_get_systemusers.json")[0];
    assert_eq!(user.id(), row.id());
    assert_eq!(user.fields().count(), row.fields().count());
    for (name, field) in user.fields() {
        match (&field.value, value(row, name)) {
            // The same JSON, indented deeper in the collection.
            (Value::Json(one), Value::Json(other)) => assert_eq!(
                serde_json::from_str::<serde_json::Value>(one).unwrap(),
                serde_json::from_str::<serde_json::Value>(other).unwrap()
            ),
            (one, other) => assert_eq!(one, other, "{name}"),
        }
    }
}

#[test]
fn the_72_security_roles_keep_their_managed_property_objects() {
    let roles = records(role(), "tf_get_security_roles.json");
    assert_eq!(roles.len(), 72);
    let ids: BTreeSet<&str> = roles.iter().map(Record::id).collect();
    assert_eq!(ids.len(), 72, "every role once");
    let first = &roles[0];
    assert_eq!(first.id(), "4931681d-8163-e811-a965-000d3a11fe32");
    assert_eq!(
        text(first, "name"),
        "Export Customizations (Solution Checker)"
    );
    assert_eq!(
        text(first, "businessunitid"),
        "1360fdcb-b6e1-ee11-904c-002248dad9c1"
    );
    for role in &roles {
        let Value::Json(managed) = value(role, "iscustomizable") else {
            panic!("{}: iscustomizable is not kept as JSON", role.id());
        };
        let managed: serde_json::Value = serde_json::from_str(managed).unwrap();
        assert_eq!(
            managed["ManagedPropertyLogicalName"],
            "iscustomizableanddeletable"
        );
        assert!(managed["Value"].is_boolean());
    }
}

#[test]
fn security_roles_filtered_by_business_unit_hold_that_unit_only() {
    let roles = records(role(), "tf_get_security_roles_filter_bu.json");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].id(), "4931681d-8163-e811-a965-000d3a11fe32");
    assert_eq!(
        text(&roles[0], "businessunitid"),
        "00000000-0000-0000-0000-000000000002"
    );
}

#[test]
fn async_operation_keeps_the_17_digit_double_exactly() {
    let metadata = table(
        "asyncoperation",
        "asyncoperations",
        &[
            ("ownerid", AttributeType::Owner),
            ("executiontimespan", AttributeType::Double),
        ],
    );
    let operation = record(metadata, "tf_get_async_operations.json");
    assert_eq!(operation.id(), "310799b8-dc6c-ee11-9ae7-000d3aaae21d");
    // An f64 would print 118.337.
    assert_eq!(
        number(&operation, "executiontimespan"),
        "118.33699999999999"
    );
    let Value::Number(span) = value(&operation, "executiontimespan") else {
        unreachable!()
    };
    assert_eq!(serde_json::to_string(span).unwrap(), "118.33699999999999");
    assert_eq!(text(&operation, "messagename"), "ImportSolutionAsync");
    assert_eq!(number(&operation, "statecode"), "3");
    assert_eq!(
        text(&operation, "ownerid"),
        "ad3b5737-685a-ee11-be6e-000d3a4a78a6"
    );
}

#[tokio::test]
async fn who_am_i_reads_the_recorded_response() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/WhoAmI"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(real("tf_get_whoami.json").into_bytes(), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let connection = Connection::builder("t", server.uri())
        .with_authority(server.uri())
        .build()
        .unwrap();
    let client = DataverseClient::with_options(
        connection,
        Arc::new(StaticTokenAuthorizer::new(AccessToken::new("t"))),
        ClientOptions::default().with_retry_policy(RetryPolicy::disabled()),
    )
    .unwrap();

    let me = who_am_i(&client).await.unwrap();
    assert_eq!(me.user_id, "00000000-0000-0000-0000-000000000002");
    assert_eq!(me.business_unit_id, "00000000-0000-0000-0000-000000000003");
    assert_eq!(me.organization_id, "00000000-0000-0000-0000-000000000001");
}

#[test]
fn contact_read_after_an_update_has_the_updated_values() {
    let updated = record(contact(), "tf_get_contact_10_update_3.json");
    assert_eq!(updated.id(), "00000000-0000-0000-0000-000000000010");
    assert_eq!(text(&updated, "firstname"), "John1");
    assert_eq!(text(&updated, "lastname"), "Doe1");
    assert_eq!(text(&updated, "emailaddress1"), "johndoe@contoso.com1");
    assert_eq!(number(&updated, "annualincome"), "1234.5100000000");
    assert_eq!(number(&updated, "exchangerate"), "1.000000000000");
    assert_eq!(text(&updated, "birthdate"), "2024-04-11");
    assert_eq!(
        text(&updated, "parentcustomerid"),
        "00000000-0000-0000-0000-000000000020"
    );
}

#[test]
fn contact_with_relationships_points_at_account_20() {
    let related = record(contact(), "tf_get_contact_11_relationships.json");
    assert_eq!(text(&related, "firstname"), "contact2");
    assert_eq!(value(&related, "lastname"), &Value::Null);
    assert_eq!(
        text(&related, "parentcustomerid"),
        "00000000-0000-0000-0000-000000000020"
    );
    assert_eq!(value(&related, "accountid"), &Value::Null);
    assert_eq!(
        text(&related, "ownerid"),
        "c76fee97-961f-ef11-840b-000d3abf969a"
    );
    assert!(related.get("_parentcustomerid_value").is_none());
}

#[test]
fn solution_with_an_expanded_publisher_keeps_the_publisher_id() {
    let metadata = table(
        "solution",
        "solutions",
        &[
            ("publisherid", AttributeType::Lookup),
            ("organizationid", AttributeType::Lookup),
        ],
    );
    let solutions = records(metadata, "tf_get_solution_datasource.json");
    assert_eq!(solutions.len(), 1);
    let solution = &solutions[0];
    assert_eq!(solution.id(), "70edca66-e4c2-4384-92e0-4300465c1894");
    assert_eq!(text(solution, "uniquename"), "ProductivityToolsAnchor");
    assert_eq!(text(solution, "version"), "9.2.1.1020");
    // `_publisherid_value` and the expanded `publisherid` object both came: the field holds
    // the id, never the object.
    assert_eq!(
        value(solution, "publisherid"),
        &Value::String("9bb8ab98-18b3-4766-9a2e-243d39523107".into())
    );
    assert_eq!(
        text(solution, "organizationid"),
        "11afca7f-025d-ee11-a382-000d3a25be4d"
    );
    assert!(
        solution
            .fields()
            .all(|(_, field)| !matches!(field.value, Value::Json(_))),
        "the expanded publisher is not kept"
    );
}

#[test]
fn a_ref_collection_is_refused_with_a_clear_error() {
    let error = RecordDecoder::new(contact())
        .decode_changes(real("tf_get_account_20_ref_1.json").as_bytes())
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    let message = error.to_string();
    assert!(
        message.contains("record 1 is a reference") && message.contains("$ref"),
        "{message}"
    );
}
