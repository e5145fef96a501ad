//! Decoding throughput: pages of 5000 account records of about 60 columns, shaped like
//! `tests/fixtures/real/account_record.json`.
//!
//! `cargo bench --bench decode` reports records per second (criterion "elements").

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use d365_connector::{EntityMetadata, RecordDecoder};
use std::hint::black_box;

const RECORDS: usize = 5000;
const COLUMNS: usize = 60;

/// The fixture's `"name": value` lines, in order (it has one property per line).
fn fixture_properties() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/real/account_record.json"
    ))
    .unwrap();
    text.lines()
        .filter_map(|line| {
            let line = line.trim().trim_end_matches(',');
            let (name, value) = line.split_once("\": ")?;
            let name = name.strip_prefix('"')?;
            (name != "@odata.context").then(|| (name.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A page body of `records` rows with the fixture's first `COLUMNS` properties (the primary id
/// and name included), each row with its own id, name and modification time; lookups carry
/// their formatted-value and table annotations as Dataverse sends them when asked.
fn page_body(records: usize) -> String {
    let mut properties: Vec<(String, String)> = fixture_properties();
    let keep = |name: &str| matches!(name, "accountid" | "name" | "@odata.etag");
    let mut selected: Vec<(String, String)> = properties
        .iter()
        .filter(|(n, _)| keep(n))
        .cloned()
        .collect();
    properties.retain(|(n, _)| !keep(n));
    selected.extend(properties.into_iter().take(COLUMNS + 1 - selected.len()));

    let mut body = String::from(
        r#"{"@odata.context":"https://00000000-0000-0000-0000-000000000001.crm4.dynamics.com/api/data/v9.2/$metadata#accounts","value":["#,
    );
    for i in 0..records {
        if i > 0 {
            body.push(',');
        }
        body.push('{');
        for (j, (name, value)) in selected.iter().enumerate() {
            if j > 0 {
                body.push(',');
            }
            let value = match name.as_str() {
                "accountid" => format!("\"00000000-0000-0000-0000-{i:012}\""),
                "name" => format!("\"Sample Account {i} \\\"Ltd\\\"\""),
                "modifiedon" => format!("\"2024-06-12T14:{:02}:{:02}Z\"", i / 60 % 60, i % 60),
                _ => value.clone(),
            };
            if name.starts_with('_') && value != "null" {
                body.push_str(&format!(
                    "\"{name}@OData.Community.Display.V1.FormattedValue\":\"Some Name\",\"{name}@Microsoft.Dynamics.CRM.lookuplogicalname\":\"systemuser\","
                ));
            }
            body.push_str(&format!("\"{name}\":{value}"));
        }
        body.push('}');
    }
    body.push_str("]}");
    body
}

fn account_metadata() -> EntityMetadata {
    let lookups = [
        "owningbusinessunit",
        "owninguser",
        "primarycontactid",
        "ownerid",
        "transactioncurrencyid",
        "modifiedby",
        "createdby",
        "slainvokedid",
        "masterid",
    ];
    let attributes: Vec<serde_json::Value> = lookups
        .iter()
        .map(|name| {
            serde_json::json!({"logical_name": name, "attribute_type": "Lookup",
                "is_valid_for_read": true, "attribute_of": null, "targets": [], "date_only": false})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "logical_name": "account", "entity_set_name": "accounts",
        "primary_id_attribute": "accountid", "primary_name_attribute": "name",
        "change_tracking_enabled": true, "attributes": attributes,
    }))
    .unwrap()
}

fn decode(c: &mut Criterion) {
    let body = page_body(RECORDS);
    let decoder = RecordDecoder::new(account_metadata());
    let changes = decoder.decode_changes(body.as_bytes()).unwrap();
    assert_eq!(changes.len(), RECORDS);
    let columns = changes[0].record().unwrap().fields().count();
    assert!((COLUMNS - 5..=COLUMNS + 5).contains(&columns), "{columns}");
    eprintln!(
        "page: {RECORDS} records of {columns} columns, {} bytes",
        body.len()
    );

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);
    group.bench_function("account_page_5000_records", |b| {
        b.iter(|| decoder.decode_changes(black_box(body.as_bytes())).unwrap())
    });
    // For comparison: a generic JSON tree (which would round the numbers through f64).
    group.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body.as_bytes())).unwrap())
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
