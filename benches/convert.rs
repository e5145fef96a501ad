//! Mapping and writing throughput: a page of 5000 decoded contact records converted through a
//! ten-field mapping (ids, a Customer lookup, Money, DateOnly, DateTime, a choice's label), then
//! written as JSON Lines.
//!
//! `cargo bench --bench convert` reports records per second (criterion "elements").

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use d365_connector::{
    AttributeMetadata, AttributeType, EntityMetadata, JsonLinesSink, MappingSet, Operation, Record,
    RecordDecoder, RecordSink, ValidatedMapping,
};
use std::hint::black_box;

const RECORDS: usize = 5000;

fn contact_metadata() -> EntityMetadata {
    let column = |name: &str, kind: AttributeType| AttributeMetadata::new(name, kind);
    EntityMetadata::new("contact", "contacts", "contactid")
        .with_attribute(column("contactid", AttributeType::Uniqueidentifier))
        .with_attribute(column("firstname", AttributeType::String))
        .with_attribute(column("lastname", AttributeType::String))
        .with_attribute(column("emailaddress1", AttributeType::String))
        .with_attribute(
            column("parentcustomerid", AttributeType::Customer)
                .with_targets(["account", "contact"]),
        )
        .with_attribute(column("annualincome", AttributeType::Money))
        .with_attribute(column("numberofchildren", AttributeType::Integer))
        .with_attribute(column("birthdate", AttributeType::DateTime).with_date_only(true))
        .with_attribute(column("modifiedon", AttributeType::DateTime))
        .with_attribute(column("statecode", AttributeType::State))
}

/// A page as Dataverse sends it for the mapped columns, with formatted values requested.
fn page_body() -> String {
    let mut body = String::from(
        r#"{"@odata.context":"https://contoso.crm4.dynamics.com/api/data/v9.2/$metadata#contacts","value":["#,
    );
    for i in 0..RECORDS {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            concat!(
                r#"{{"@odata.etag":"W/\"{i}\"","contactid":"00000000-0000-0000-0000-{i:012}","#,
                r#""firstname":"Given{i}","lastname":"O'Family {i}","emailaddress1":"person{i}@example.com","#,
                r#""_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname":"account","#,
                r#""_parentcustomerid_value":"11111111-0000-0000-0000-{i:012}","#,
                r#""annualincome@OData.Community.Display.V1.FormattedValue":"$922,337,203,685,477.58","#,
                r#""annualincome":922337203685477.5807,"numberofchildren":{kids},"#,
                r#""birthdate":"1980-04-{day:02}","modifiedon":"2024-06-12T14:13:25Z","#,
                r#""statecode@OData.Community.Display.V1.FormattedValue":"Active","statecode":0}}"#
            ),
            i = i,
            kids = i % 4,
            day = i % 28 + 1,
        ));
    }
    body.push_str("]}");
    body
}

fn mapping(metadata: &EntityMetadata) -> ValidatedMapping {
    let set: MappingSet = serde_json::from_value(serde_json::json!({
        "target": { "object": "Person",
                    "fields": { "ExternalId": "id", "FirstName": "string", "LastName": "string",
                                "Email": "string", "CompanyId": "id", "Income": "number",
                                "Children": "integer", "Birthday": "date", "Updated": "datetime",
                                "Status": "string" },
                    "required": ["ExternalId"] },
        "mode": "upsert",
        "identifiers": ["ExternalId"],
        "mappings": [
            { "source": "contactid", "target": "ExternalId" },
            { "source": "firstname", "target": "FirstName" },
            { "source": "lastname", "target": "LastName" },
            { "source": "emailaddress1", "target": "Email" },
            { "source": "parentcustomerid", "target": "CompanyId" },
            { "source": "annualincome", "target": "Income" },
            { "source": "numberofchildren", "target": "Children" },
            { "source": "birthdate", "target": "Birthday" },
            { "source": "modifiedon", "target": "Updated" },
            { "source": "statecode", "target": "Status", "label": true }
        ]
    }))
    .expect("the bench mapping parses");
    set.validate(metadata).expect("the bench mapping is valid")
}

async fn convert_page(mapping: &ValidatedMapping, records: &[Record]) -> Vec<Operation> {
    let mut operations = Vec::with_capacity(records.len());
    for record in records {
        let target = mapping.convert(record, None).await.expect("converts");
        let key = mapping.identifier_key(&target);
        operations.push(Operation::Upsert {
            key,
            record: target,
        });
    }
    operations
}

fn convert(c: &mut Criterion) {
    let metadata = contact_metadata();
    let mapping = mapping(&metadata);
    let records: Vec<Record> = RecordDecoder::new(metadata)
        .decode_changes(page_body().as_bytes())
        .expect("the bench page decodes")
        .into_iter()
        .filter_map(|change| change.record().cloned())
        .collect();
    assert_eq!(records.len(), RECORDS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let sink = JsonLinesSink::new(std::io::sink());

    let mut group = c.benchmark_group("convert");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);
    group.bench_function("contact_page_5000_records_10_fields", |b| {
        b.iter(|| runtime.block_on(convert_page(&mapping, black_box(&records))))
    });
    group.bench_function("convert_and_write_json_lines", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let operations = convert_page(&mapping, black_box(&records)).await;
                sink.write("Person", &operations).await.expect("writes")
            })
        })
    });
    group.finish();
}

criterion_group!(benches, convert);
criterion_main!(benches);
