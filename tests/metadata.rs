//! Entity metadata: the real `EntityDefinitions` fixtures parsed as they are, and the fetch
//! requests against a wiremock stand-in.

use d365_connector::testkit::{
    attributes_from_dataverse_json, entity_metadata_from_dataverse_json,
};
use d365_connector::{
    AccessToken, AttributeType, ClientOptions, Connection, DataverseClient, EntityMetadata,
    EntitySummary, ErrorKind, MetadataOptions, RetryPolicy, StaticTokenAuthorizer,
};
use serde_json::{Value, json};
use std::sync::Arc;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REAL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/real");

fn real(name: &str) -> String {
    std::fs::read_to_string(format!("{REAL}/{name}")).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The real fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn every_real_metadata_fixture_parses() {
    let mut parsed = Vec::new();
    for entry in std::fs::read_dir(REAL).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        let context = json["@odata.context"].as_str().unwrap_or_default();
        if !context.contains("#EntityDefinitions") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if json.get("value").is_some() {
            let attributes = attributes_from_dataverse_json(&text).unwrap();
            assert!(!attributes.is_empty(), "{name}: no attributes");
        } else {
            let entity = entity_metadata_from_dataverse_json(&text).unwrap();
            assert!(!entity.entity_set_name().is_empty(), "{name}");
        }
        parsed.push(name);
    }
    parsed.sort();
    assert_eq!(
        parsed,
        [
            "entitydefinition_account_with_relationships.json",
            "entitydefinition_contact.json",
            "entitydefinition_mailbox_attributes.json",
            "tf_get_entitydefinition_businessunit.json",
            "tf_get_entitydefinition_businessunit_attributes.json",
            "tf_get_entitydefinition_mailbox.json",
        ]
    );
}

#[test]
fn account_definition_has_its_real_names_and_change_tracking() {
    let account = entity_metadata_from_dataverse_json(&real(
        "entitydefinition_account_with_relationships.json",
    ))
    .unwrap();
    assert_eq!(account.logical_name(), "account");
    assert_eq!(account.entity_set_name(), "accounts");
    assert_eq!(account.primary_id_attribute(), "accountid");
    assert_eq!(account.primary_name_attribute(), Some("name"));
    assert!(account.change_tracking_enabled());
    // The fixture was fetched without `$expand=Attributes`.
    assert!(account.attributes().is_empty());
}

#[test]
fn account_relationships_show_contact_parentcustomerid_referencing_account() {
    let account = entity_metadata_from_dataverse_json(&real(
        "entitydefinition_account_with_relationships.json",
    ))
    .unwrap();
    // 46 one-to-many + 20 many-to-one, of which 3 self-references appear in both lists.
    assert_eq!(account.relationships().len(), 63);
    let customer = account.relationship("contact_customer_accounts").unwrap();
    assert_eq!(customer.referencing_entity(), "contact");
    assert_eq!(customer.referencing_attribute(), "parentcustomerid");
    assert_eq!(customer.referenced_entity(), "account");
    assert_eq!(customer.referenced_attribute(), "accountid");
    assert_eq!(
        customer.referencing_navigation_property(),
        Some("parentcustomerid_account")
    );
    let primary_contact = account.relationship("account_primary_contact").unwrap();
    assert_eq!(primary_contact.referencing_entity(), "account");
    assert_eq!(primary_contact.referencing_attribute(), "primarycontactid");
    assert_eq!(primary_contact.referenced_entity(), "contact");
}

#[test]
fn contact_definition_has_its_real_names() {
    let contact =
        entity_metadata_from_dataverse_json(&real("entitydefinition_contact.json")).unwrap();
    assert_eq!(contact.logical_name(), "contact");
    assert_eq!(contact.entity_set_name(), "contacts");
    assert_eq!(contact.primary_id_attribute(), "contactid");
    assert_eq!(contact.primary_name_attribute(), Some("fullname"));
    assert!(contact.change_tracking_enabled());
}

#[test]
fn mailbox_attribute_types_come_from_the_odata_casts() {
    let attributes =
        attributes_from_dataverse_json(&real("entitydefinition_mailbox_attributes.json")).unwrap();
    assert_eq!(attributes.len(), 140);
    let type_of = |name: &str| {
        attributes
            .iter()
            .find(|a| a.logical_name() == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .attribute_type()
            .clone()
    };
    assert_eq!(type_of("actdeliverymethod"), AttributeType::Picklist);
    assert_eq!(
        type_of("allowemailconnectortousecredentials"),
        AttributeType::Boolean
    );
    assert_eq!(type_of("averagetotalduration"), AttributeType::Integer);
    assert_eq!(type_of("createdby"), AttributeType::Lookup);
    assert_eq!(type_of("ownerid"), AttributeType::Lookup);
    assert_eq!(type_of("createdbyname"), AttributeType::String);
    assert_eq!(type_of("createdon"), AttributeType::DateTime);
    assert_eq!(type_of("exchangesyncstatexml"), AttributeType::Memo);
    assert_eq!(type_of("entityimage"), AttributeType::Image);
    assert_eq!(type_of("exchangesyncstatexmlfileref"), AttributeType::File);
    assert_eq!(type_of("versionnumber"), AttributeType::BigInt);
    assert_eq!(type_of("owneridtype"), AttributeType::EntityName);
    assert_eq!(type_of("statecode"), AttributeType::State);
    assert_eq!(type_of("statuscode"), AttributeType::Status);
    // No cast and no AttributeType: the type is unknown, not guessed.
    assert_eq!(
        type_of("actdeliverymethodname"),
        AttributeType::Other("Unknown".into())
    );
    assert_eq!(type_of("mailboxid"), AttributeType::Other("Unknown".into()));
    // The list did not select IsValidForRead or AttributeOf.
    assert!(attributes.iter().all(|a| a.is_valid_for_read()));
    assert!(attributes.iter().all(|a| a.attribute_of().is_none()));
}

#[test]
fn attribute_type_name_refines_virtual_columns_and_date_behaviour_is_read() {
    let json = json!({"value": [
        {"LogicalName": "new_tags", "AttributeType": "Virtual",
         "AttributeTypeName": {"Value": "MultiSelectPicklistType"}},
        {"LogicalName": "entityimage", "AttributeType": "Virtual",
         "AttributeTypeName": {"Value": "ImageType"}},
        {"LogicalName": "new_contract", "AttributeType": "Virtual",
         "AttributeTypeName": {"Value": "FileType"}},
        {"LogicalName": "parentcustomeridname", "AttributeType": "String",
         "AttributeTypeName": {"Value": "StringType"}, "AttributeOf": "parentcustomerid",
         "IsValidForRead": true},
        {"@odata.type": "#Microsoft.Dynamics.CRM.LookupAttributeMetadata",
         "LogicalName": "parentcustomerid", "AttributeType": "Customer",
         "Targets": ["account", "contact"]},
        {"@odata.type": "#Microsoft.Dynamics.CRM.DateTimeAttributeMetadata",
         "LogicalName": "birthdate", "AttributeType": "DateTime",
         "DateTimeBehavior": {"Value": "DateOnly"}},
        {"LogicalName": "createdon", "AttributeType": "DateTime",
         "DateTimeBehavior": {"Value": "UserLocal"}},
        {"LogicalName": "traversedpath", "AttributeType": "String", "IsValidForRead": false},
        {"LogicalName": "new_odd", "AttributeType": "SomethingNew"}
    ]});
    let attributes = attributes_from_dataverse_json(&json.to_string()).unwrap();
    let get = |name: &str| {
        attributes
            .iter()
            .find(|a| a.logical_name() == name)
            .unwrap()
    };
    assert_eq!(
        get("new_tags").attribute_type(),
        &AttributeType::MultiSelectPicklist
    );
    assert_eq!(get("entityimage").attribute_type(), &AttributeType::Image);
    assert_eq!(get("new_contract").attribute_type(), &AttributeType::File);
    assert_eq!(
        get("parentcustomeridname").attribute_of(),
        Some("parentcustomerid")
    );
    // AttributeType wins over the cast, which cannot tell Customer from Lookup.
    assert_eq!(
        get("parentcustomerid").attribute_type(),
        &AttributeType::Customer
    );
    assert_eq!(get("parentcustomerid").targets(), ["account", "contact"]);
    assert!(get("birthdate").is_date_only());
    assert!(!get("createdon").is_date_only());
    assert!(!get("traversedpath").is_valid_for_read());
    assert_eq!(
        get("new_odd").attribute_type(),
        &AttributeType::Other("SomethingNew".into())
    );
}

#[test]
fn malformed_metadata_is_a_decode_error() {
    let error = entity_metadata_from_dataverse_json("{\"LogicalName\": 5}").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    let error = entity_metadata_from_dataverse_json("{\"LogicalName\": \"x\"}").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode);
    assert!(error.to_string().contains("EntitySetName"), "{error}");
}

#[test]
fn the_crate_serde_form_round_trips() {
    let contact = contact_parsed();
    let text = serde_json::to_string(&contact).unwrap();
    assert!(text.contains("\"entity_set_name\":\"contacts\""), "{text}");
    let back: EntityMetadata = serde_json::from_str(&text).unwrap();
    assert_eq!(back, contact);
}

// ---------------------------------------------------------------------------------------------
// Fetching
// ---------------------------------------------------------------------------------------------

const MAIN: &str = "/api/data/v9.2/EntityDefinitions(LogicalName='contact')";

fn contact_definition() -> Value {
    json!({
        "@odata.context": "https://contoso.crm4.dynamics.com/api/data/v9.2/$metadata#EntityDefinitions(LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled,Attributes(LogicalName,AttributeType,AttributeTypeName,IsValidForRead,AttributeOf))/$entity",
        "LogicalName": "contact", "EntitySetName": "contacts", "PrimaryIdAttribute": "contactid",
        "PrimaryNameAttribute": "fullname", "ChangeTrackingEnabled": true,
        "MetadataId": "608861bc-50a4-4c5f-a02c-21fe1943e2cf",
        "Attributes": [
            {"@odata.type": "#Microsoft.Dynamics.CRM.UniqueIdentifierAttributeMetadata",
             "LogicalName": "contactid", "AttributeType": "Uniqueidentifier",
             "AttributeTypeName": {"Value": "UniqueidentifierType"}, "IsValidForRead": true,
             "AttributeOf": null, "MetadataId": "1"},
            {"@odata.type": "#Microsoft.Dynamics.CRM.LookupAttributeMetadata",
             "LogicalName": "parentcustomerid", "AttributeType": "Customer",
             "AttributeTypeName": {"Value": "CustomerType"}, "IsValidForRead": true,
             "AttributeOf": null, "MetadataId": "2"},
            {"@odata.type": "#Microsoft.Dynamics.CRM.StringAttributeMetadata",
             "LogicalName": "parentcustomeridname", "AttributeType": "String",
             "AttributeTypeName": {"Value": "StringType"}, "IsValidForRead": true,
             "AttributeOf": "parentcustomerid", "MetadataId": "3"},
            {"@odata.type": "#Microsoft.Dynamics.CRM.DateTimeAttributeMetadata",
             "LogicalName": "birthdate", "AttributeType": "DateTime",
             "AttributeTypeName": {"Value": "DateTimeType"}, "IsValidForRead": true,
             "AttributeOf": null, "MetadataId": "4"},
            {"@odata.type": "#Microsoft.Dynamics.CRM.StateAttributeMetadata",
             "LogicalName": "statecode", "AttributeType": "State",
             "AttributeTypeName": {"Value": "StateType"}, "IsValidForRead": true,
             "AttributeOf": null, "MetadataId": "5"},
            {"@odata.type": "#Microsoft.Dynamics.CRM.ImageAttributeMetadata",
             "LogicalName": "entityimage", "AttributeType": "Virtual",
             "AttributeTypeName": {"Value": "ImageType"}, "IsValidForRead": true,
             "AttributeOf": null, "MetadataId": "6"}
        ]
    })
}

fn lookups() -> Value {
    json!({"value": [
        {"@odata.type": "#Microsoft.Dynamics.CRM.LookupAttributeMetadata",
         "LogicalName": "parentcustomerid", "Targets": ["account", "contact"], "MetadataId": "2"}
    ]})
}

fn datetimes() -> Value {
    json!({"value": [
        {"@odata.type": "#Microsoft.Dynamics.CRM.DateTimeAttributeMetadata",
         "LogicalName": "birthdate", "DateTimeBehavior": {"Value": "DateOnly"}, "MetadataId": "4"}
    ]})
}

fn options(values: &[(i64, &str)]) -> Value {
    let options: Vec<Value> = values
        .iter()
        .map(|(value, label)| {
            json!({"Value": value, "Label": {
                "LocalizedLabels": [{"Label": label, "LanguageCode": 1033}],
                "UserLocalizedLabel": {"Label": label, "LanguageCode": 1033}}})
        })
        .collect();
    json!({"Options": options})
}

fn contact_parsed() -> EntityMetadata {
    entity_metadata_from_dataverse_json(&contact_definition().to_string()).unwrap()
}

fn client(server: &MockServer) -> DataverseClient {
    let connection = Connection::builder("t", server.uri())
        .with_authority(server.uri())
        .build()
        .unwrap();
    DataverseClient::with_options(
        connection,
        Arc::new(StaticTokenAuthorizer::new(AccessToken::new("t"))),
        ClientOptions::default().with_retry_policy(RetryPolicy::disabled()),
    )
    .unwrap()
}

/// Answers every request no other mock matched with a loud 418 and fails the test on drop.
async fn fail_unexpected(server: &MockServer) {
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(418).set_body_string("unexpected request"))
        .with_priority(u8::MAX)
        .expect(0)
        .named("unexpected request")
        .mount(server)
        .await;
}

async fn mount(server: &MockServer, url_path: &str, select: &str, body: Value) {
    Mock::given(method("GET"))
        .and(path(url_path))
        .and(query_param("$select", select))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

async fn mount_metadata(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(MAIN))
        .and(query_param(
            "$select",
            "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled",
        ))
        .and(query_param(
            "$expand",
            "Attributes($select=LogicalName,AttributeType,AttributeTypeName,IsValidForRead,AttributeOf)",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_definition()))
        .expect(1)
        .mount(server)
        .await;
    mount(
        server,
        &format!("{MAIN}/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata"),
        "LogicalName,Targets",
        lookups(),
    )
    .await;
    mount(
        server,
        &format!("{MAIN}/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata"),
        "LogicalName,DateTimeBehavior",
        datetimes(),
    )
    .await;
}

/// Decodes `%XX` escapes (the wire may encode `'`), leaving everything else as is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The path and query of every request the server received, in order.
async fn requests(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let url = &r.url;
            let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
            percent_decode(&format!("{}{query}", url.path()))
        })
        .collect()
}

#[tokio::test]
async fn fetch_sends_the_three_requests_and_merges_targets_and_date_behaviour() {
    let server = MockServer::start().await;
    mount_metadata(&server).await;
    fail_unexpected(&server).await;

    let contact = EntityMetadata::fetch(&client(&server), "contact", &MetadataOptions::default())
        .await
        .unwrap();

    assert_eq!(
        requests(&server).await,
        [
            "/api/data/v9.2/EntityDefinitions(LogicalName='contact')?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled&$expand=Attributes($select=LogicalName,AttributeType,AttributeTypeName,IsValidForRead,AttributeOf)",
            "/api/data/v9.2/EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets",
            "/api/data/v9.2/EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,DateTimeBehavior",
        ]
    );
    assert_eq!(contact.entity_set_name(), "contacts");
    assert_eq!(contact.primary_id_attribute(), "contactid");
    assert!(contact.change_tracking_enabled());

    let customer = contact.attribute("parentcustomerid").unwrap();
    assert_eq!(customer.attribute_type(), &AttributeType::Customer);
    assert!(customer.attribute_type().is_lookup());
    assert_eq!(customer.targets(), ["account", "contact"]);
    let name = contact.attribute("parentcustomeridname").unwrap();
    assert_eq!(name.attribute_of(), Some("parentcustomerid"));
    assert!(contact.attribute("birthdate").unwrap().is_date_only());
    assert_eq!(
        contact.attribute("entityimage").unwrap().attribute_type(),
        &AttributeType::Image
    );
    assert!(contact.attribute("statecode").unwrap().options().is_empty());
}

#[tokio::test]
async fn fetch_with_option_labels_sends_the_three_option_set_casts() {
    let server = MockServer::start().await;
    mount_metadata(&server).await;
    for (cast, body) in [
        ("PicklistAttributeMetadata", json!({"value": []})),
        (
            "StateAttributeMetadata",
            json!({"value": [{"LogicalName": "statecode", "MetadataId": "5",
                              "OptionSet": options(&[(0, "Active"), (1, "Inactive")])}]}),
        ),
        ("StatusAttributeMetadata", json!({"value": []})),
    ] {
        Mock::given(method("GET"))
            .and(path(format!(
                "{MAIN}/Attributes/Microsoft.Dynamics.CRM.{cast}"
            )))
            .and(query_param("$select", "LogicalName"))
            .and(query_param("$expand", "OptionSet($select=Options)"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
    }
    fail_unexpected(&server).await;

    let contact = EntityMetadata::fetch(
        &client(&server),
        "contact",
        &MetadataOptions::new().with_option_labels(true),
    )
    .await
    .unwrap();

    assert_eq!(requests(&server).await.len(), 6);
    let state = contact.attribute("statecode").unwrap();
    assert_eq!(state.options().len(), 2);
    assert_eq!(state.option_label(0), Some("Active"));
    assert_eq!(state.option_label(1), Some("Inactive"));
    assert_eq!(state.option_label(2), None);
}

#[tokio::test]
async fn a_bad_logical_name_is_refused_before_sending() {
    let server = MockServer::start().await;
    fail_unexpected(&server).await;
    for bad in ["Account", "account')/x", "", "acc ount"] {
        let error = EntityMetadata::fetch(&client(&server), bad, &MetadataOptions::default())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config, "{bad:?}");
        assert!(error.to_string().contains("logical name"), "{error}");
    }
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn list_syncable_leaves_out_private_and_virtual_tables() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/data/v9.2/EntityDefinitions"))
        .and(query_param(
            "$select",
            "LogicalName,EntitySetName,IsPrivate,TableType,ChangeTrackingEnabled",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"value": [
            {"LogicalName": "account", "EntitySetName": "accounts", "IsPrivate": false,
             "TableType": "Standard", "ChangeTrackingEnabled": true, "MetadataId": "a"},
            {"LogicalName": "activityfileattachment", "EntitySetName": "activityfileattachments",
             "IsPrivate": true, "TableType": "Standard", "ChangeTrackingEnabled": false, "MetadataId": "b"},
            {"LogicalName": "new_remote", "EntitySetName": "new_remotes", "IsPrivate": false,
             "TableType": "Virtual", "ChangeTrackingEnabled": false, "MetadataId": "c"},
            {"LogicalName": "msdyn_event", "EntitySetName": "msdyn_events", "IsPrivate": false,
             "TableType": "Elastic", "ChangeTrackingEnabled": false, "MetadataId": "d"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;
    fail_unexpected(&server).await;

    let tables = EntityMetadata::list_syncable(&client(&server))
        .await
        .unwrap();
    assert_eq!(
        tables,
        [
            EntitySummary {
                logical_name: "account".into(),
                entity_set_name: "accounts".into(),
                change_tracking_enabled: true,
            },
            EntitySummary {
                logical_name: "msdyn_event".into(),
                entity_set_name: "msdyn_events".into(),
                change_tracking_enabled: false,
            },
        ]
    );
}
