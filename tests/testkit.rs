//! The stand-in Dynamics instance, exercised with plain `reqwest` as any Dataverse client would.

use d365_connector::AttributeType;
use d365_connector::testkit::{
    AccountShape, AttributeDef, EntityDef, Fault, ServiceLimits, StandIn, ThrottleCounts,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const FORMATTED: &str = "OData.Community.Display.V1.FormattedValue";
const LOOKUP: &str = "Microsoft.Dynamics.CRM.lookuplogicalname";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn client_credentials(crm: &StandIn, secret: &str) -> reqwest::Response {
    client()
        .post(crm.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", StandIn::CLIENT_ID),
            ("client_secret", secret),
            ("scope", &crm.default_scope()),
        ])
        .send()
        .await
        .unwrap()
}

async fn token(crm: &StandIn) -> String {
    let body: Value = client_credentials(crm, StandIn::CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// GET with the usual Dataverse headers; `url` is relative to the Web API root or absolute.
async fn get(crm: &StandIn, token: &str, url: &str, prefer: &[&str]) -> reqwest::Response {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{}{url}", crm.web_api_url())
    };
    let mut request = client()
        .get(url)
        .bearer_auth(token)
        .header("Accept", "application/json")
        .header("OData-MaxVersion", "4.0")
        .header("OData-Version", "4.0");
    if !prefer.is_empty() {
        request = request.header("Prefer", prefer.join(","));
    }
    request.send().await.unwrap()
}

async fn get_json(crm: &StandIn, token: &str, url: &str, prefer: &[&str]) -> Value {
    let response = get(crm, token, url, prefer).await;
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap()
}

#[tokio::test]
async fn client_credentials_issue_a_token_and_a_bad_secret_is_refused() {
    let crm = StandIn::with_sample_data().await;

    let ok = client_credentials(&crm, StandIn::CLIENT_SECRET).await;
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(
        body.get("refresh_token").is_none(),
        "client credentials never return a refresh token"
    );
    let token = body["access_token"].as_str().unwrap();

    let who = get_json(&crm, token, "WhoAmI", &[]).await;
    assert_eq!(who["UserId"], StandIn::APPLICATION_USER_ID);
    assert_eq!(who["BusinessUnitId"], StandIn::BUSINESS_UNIT_ID);
    assert!(
        who["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
    );

    let bad = client_credentials(&crm, "not-the-secret").await;
    assert_eq!(bad.status(), 401);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000215: Invalid client secret provided.")
    );
    assert!(body["trace_id"].is_string() && body["correlation_id"].is_string());
    assert_eq!(crm.token_requests(), 2);
}

#[tokio::test]
async fn authorization_code_with_pkce_and_rotating_refresh_tokens() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let crm = StandIn::start().await;
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let scope = format!("{}/user_impersonation offline_access", crm.url());

    // The authorize endpoint signs in at once and redirects back with the code and state.
    let authorize = client()
        .get(crm.authorize_url())
        .query(&[
            ("client_id", StandIn::CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", "http://localhost:8765/callback"),
            ("scope", &scope),
            ("state", "xyz"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(authorize.status(), 302);
    let location = url::Url::parse(authorize.headers()["location"].to_str().unwrap()).unwrap();
    let pairs: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "xyz");
    let code = pairs["code"].clone();

    let redeem = |verifier: &'static str, code: String| {
        client()
            .post(crm.token_url())
            .form(&[
                ("grant_type", "authorization_code".to_owned()),
                ("client_id", StandIn::CLIENT_ID.to_owned()),
                ("code", code),
                ("redirect_uri", "http://localhost:8765/callback".to_owned()),
                ("code_verifier", verifier.to_owned()),
            ])
            .send()
    };
    let wrong: Value = redeem("wrong-verifier-wrong-verifier-wrong-verifier", code.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["error"], "invalid_grant");
    assert_eq!(wrong["error_codes"], json!([50148]));

    let tokens: Value = redeem(verifier, code).await.unwrap().json().await.unwrap();
    let first_refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let who = get_json(
        &crm,
        tokens["access_token"].as_str().unwrap(),
        "WhoAmI",
        &[],
    )
    .await;
    assert_eq!(who["UserId"], StandIn::USER_ID);

    let refresh = |token: String| {
        client()
            .post(crm.token_url())
            .form(&[
                ("grant_type", "refresh_token".to_owned()),
                ("client_id", StandIn::CLIENT_ID.to_owned()),
                ("refresh_token", token),
                ("scope", format!("{}/user_impersonation", crm.url())),
            ])
            .send()
    };
    let rotated = refresh(first_refresh.clone()).await.unwrap();
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let second_refresh = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, first_refresh);

    let replay = refresh(first_refresh).await.unwrap();
    assert_eq!(replay.status(), 400);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["error"], "invalid_grant");
    assert!(
        replay["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS70008:")
    );
}

#[tokio::test]
async fn web_api_requires_an_issued_unexpired_token() {
    let crm = StandIn::with_sample_data().await;
    let anonymous = client()
        .get(format!("{}accounts?$select=name", crm.web_api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(
        anonymous.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer authorization_uri=")
    );
    let body: Value = anonymous.json().await.unwrap();
    assert!(body["error"]["message"].is_string());

    let forged = get(
        &crm,
        "eyJ0eXAiOiJKV1QifQ.e30.forged",
        "accounts?$select=name",
        &[],
    )
    .await;
    assert_eq!(forged.status(), 401);

    let token = token(&crm).await;
    assert_eq!(
        get(&crm, &token, "accounts?$select=name", &[])
            .await
            .status(),
        200
    );
    crm.inject(Fault::ExpireAccessTokens);
    assert_eq!(
        get(&crm, &token, "accounts?$select=name", &[])
            .await
            .status(),
        401
    );
    let fresh = crm.issue_access_token();
    assert_eq!(
        get(&crm, &fresh, "accounts?$select=name", &[])
            .await
            .status(),
        200
    );

    let recorded = crm.api_requests();
    assert_eq!(recorded.len(), 5);
    assert_eq!(recorded[0].header("authorization"), None);
    assert_eq!(
        recorded[2].header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        recorded[2].query_pairs(),
        vec![("$select".to_owned(), "name".to_owned())]
    );
}

#[tokio::test]
async fn pages_follow_next_links_across_three_pages() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let prefer = ["odata.maxpagesize=10"];

    let mut url = "contacts?$select=fullname&$orderby=modifiedon asc,contactid asc".to_owned();
    let mut pages = Vec::new();
    loop {
        let response = get(&crm, &token, &url, &prefer).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["preference-applied"],
            "odata.maxpagesize=10"
        );
        let body: Value = response.json().await.unwrap();
        assert!(
            body["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("$metadata#contacts(fullname)")
        );
        pages.push(body["value"].as_array().unwrap().clone());
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with(&crm.web_api_url()),
                    "absolute next link: {next}"
                );
                assert!(
                    next.contains("$skiptoken=%3Ccookie%20pagenumber=%22"),
                    "{next}"
                );
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    let rows: Vec<&Value> = pages.iter().flatten().collect();
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|r| r["contactid"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 25, "every contact exactly once");
    // modifiedon ascending, even across pages and among rows sharing a second.
    let stored = crm.rows("contact");
    let modified = |id: &str| {
        stored.iter().find(|r| r["contactid"] == id).unwrap()["modifiedon"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let order: Vec<String> = rows
        .iter()
        .map(|r| modified(r["contactid"].as_str().unwrap()))
        .collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]));
    // The next link is followed with the same Prefer header, exactly as given.
    assert!(
        crm.api_requests()
            .iter()
            .all(|r| r.header("prefer") == Some("odata.maxpagesize=10"))
    );
}

#[tokio::test]
async fn select_is_honoured_and_money_keeps_its_digits() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let response = get(
        &crm,
        &token,
        "accounts?$select=name,revenue,_primarycontactid_value&$filter=accountnumber eq 'ACC-1002'",
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("\"revenue\":922337203685477.5807"),
        "digits kept: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let row = body["value"][0].as_object().unwrap();
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "@odata.etag",
            "_primarycontactid_value",
            "accountid",
            "name",
            "revenue"
        ]
    );
    assert_eq!(row["name"], "Fabrikam, Inc.");
    assert!(row["@odata.etag"].as_str().unwrap().starts_with("W/\""));
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts(name,revenue,_primarycontactid_value)")
    );
}

#[tokio::test]
async fn annotations_only_when_preferred() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let url = "contacts?$select=fullname,_parentcustomerid_value,annualincome,birthdate,statecode";

    let plain = get_json(&crm, &token, url, &[]).await;
    assert!(plain["value"].as_array().unwrap().iter().all(|r| {
        r.as_object()
            .unwrap()
            .keys()
            .all(|k| k == "@odata.etag" || !k.contains('@'))
    }));

    let annotated = get_json(
        &crm,
        &token,
        url,
        &[&format!(
            "odata.include-annotations=\"{FORMATTED},{LOOKUP}\""
        )],
    )
    .await;
    let rows = annotated["value"].as_array().unwrap();
    let yvonne = rows
        .iter()
        .find(|r| r["fullname"] == "Yvonne McKay")
        .unwrap();
    assert_eq!(
        yvonne[format!("_parentcustomerid_value@{LOOKUP}")],
        "account"
    );
    assert_eq!(
        yvonne[format!("_parentcustomerid_value@{FORMATTED}")],
        "Contoso Ltd"
    );
    assert_eq!(yvonne[format!("annualincome@{FORMATTED}")], "$98,000.00");
    assert_eq!(yvonne[format!("birthdate@{FORMATTED}")], "3/17/1984");
    assert_eq!(yvonne["birthdate"], "1984-03-17");
    assert_eq!(yvonne[format!("statecode@{FORMATTED}")], "Active");
    // Some contacts' parent customer is a contact.
    let thomas = rows
        .iter()
        .find(|r| r["fullname"] == "Thomas Andersen")
        .unwrap();
    assert_eq!(
        thomas[format!("_parentcustomerid_value@{LOOKUP}")],
        "contact"
    );
    assert_eq!(
        thomas[format!("_parentcustomerid_value@{FORMATTED}")],
        "Siobhan O'Brien"
    );
}

#[tokio::test]
async fn filter_with_an_escaped_quote() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let body = get_json(
        &crm,
        &token,
        "contacts?$select=fullname,lastname&$filter=lastname eq 'O''Brien'",
        &[],
    )
    .await;
    let rows = body["value"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["fullname"], "Siobhan O'Brien");

    // A watermark filter as a sync sends it, with and/or and parentheses.
    let body = get_json(
        &crm,
        &token,
        "contacts?$select=fullname&$filter=(modifiedon ge 2024-06-22T09:00:00Z and statecode eq 0) or lastname eq 'Lyon'",
        &[],
    )
    .await;
    let mut names: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["fullname"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Ina Gunnarsson", "Jon Morris", "Robert Lyon"]);

    let null_parent = get_json(
        &crm,
        &token,
        "contacts?$select=fullname&$filter=_parentcustomerid_value eq null",
        &[],
    )
    .await;
    assert_eq!(null_parent["value"].as_array().unwrap().len(), 1);

    let broken = get(
        &crm,
        &token,
        "contacts?$select=fullname&$filter=lastname eq 'O'Brien'",
        &[],
    )
    .await;
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(error_code(&body), "0x80060888");
}

#[tokio::test]
async fn change_tracking_initial_then_delta_with_changes_and_a_delete() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let prefer = ["odata.track-changes", "odata.maxpagesize=5"];

    // Initial read: pages, the last one carries the delta link.
    let mut url = "accounts?$select=name,revenue".to_owned();
    let mut count = 0;
    let delta_link = loop {
        let body = get_json(&crm, &token, &url, &prefer).await;
        count += body["value"].as_array().unwrap().len();
        if let Some(next) = body["@odata.nextLink"].as_str() {
            assert!(body.get("@odata.deltaLink").is_none());
            url = next.to_owned();
        } else {
            break body["@odata.deltaLink"].as_str().unwrap().to_owned();
        }
    };
    assert_eq!(count, 12);
    assert!(
        delta_link.starts_with(&format!(
            "{}accounts?$select=name,revenue&$deltatoken=",
            crm.web_api_url()
        )),
        "{delta_link}"
    );

    // Nothing changed: an empty delta with a new link.
    let empty = get_json(&crm, &token, &delta_link, &prefer).await;
    assert_eq!(empty["value"], json!([]));

    // One update, one insert, one delete.
    let rows = crm.rows("account");
    let contoso = rows.iter().find(|r| r["name"] == "Contoso Ltd").unwrap()["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    let tailspin = rows.iter().find(|r| r["name"] == "Tailspin Toys").unwrap()["accountid"]
        .as_str()
        .unwrap()
        .to_owned();
    crm.upsert(
        "account",
        json!({"accountid": contoso, "revenue": "5100000.0000"}),
    );
    let new_id = crm.upsert(
        "account",
        json!({"name": "Proseware, Inc.", "revenue": 250000}),
    );
    assert!(crm.delete("account", &tailspin));

    let delta = get_json(&crm, &token, &delta_link, &prefer).await;
    assert!(
        delta["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#accounts(name,revenue)/$delta")
    );
    let value = delta["value"].as_array().unwrap();
    assert_eq!(value.len(), 3);
    assert_eq!(value[0]["accountid"], contoso.as_str());
    assert_eq!(value[0]["revenue"].to_string(), "5100000.0");
    assert_eq!(value[0]["name"], "Contoso Ltd");
    assert_eq!(value[1]["accountid"], new_id.as_str());
    assert_eq!(value[1]["name"], "Proseware, Inc.");
    assert_eq!(
        value[2],
        json!({
            "@odata.context": format!("{}$metadata#accounts/$deletedEntity", crm.web_api_url()),
            "id": tailspin,
            "reason": "deleted"
        })
    );
    let next_delta = delta["@odata.deltaLink"].as_str().unwrap();
    assert_ne!(next_delta, delta_link);
    let after = get_json(&crm, &token, next_delta, &prefer).await;
    assert_eq!(after["value"], json!([]));
}

#[tokio::test]
async fn change_tracking_errors() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;

    let off = get(
        &crm,
        &token,
        "systemusers?$select=fullname",
        &["odata.track-changes"],
    )
    .await;
    assert_eq!(off.status(), 400);
    let body: Value = off.json().await.unwrap();
    assert_eq!(error_code(&body), "0x80072491");
    assert_eq!(
        body["error"]["message"],
        "Entity systemuser isn't enabled for change tracking"
    );

    let filtered = get(
        &crm,
        &token,
        "contacts?$select=fullname&$filter=statecode eq 0",
        &["odata.track-changes"],
    )
    .await;
    assert_eq!(filtered.status(), 400);

    let initial = get_json(
        &crm,
        &token,
        "contacts?$select=fullname",
        &["odata.track-changes"],
    )
    .await;
    let delta_link = initial["@odata.deltaLink"].as_str().unwrap().to_owned();
    crm.inject(Fault::ExpireDeltaTokens);
    let expired = get(&crm, &token, &delta_link, &["odata.track-changes"]).await;
    assert_eq!(expired.status(), 400);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(error_code(&body), "0x80044352");
    assert_eq!(
        body["error"]["message"],
        "Version stamp associated with the client has expired. Please perform a full sync."
    );
    // A full resync hands out a token that works.
    let resync = get_json(
        &crm,
        &token,
        "contacts?$select=fullname",
        &["odata.track-changes"],
    )
    .await;
    assert_eq!(resync["value"].as_array().unwrap().len(), 25);
    let fresh = resync["@odata.deltaLink"].as_str().unwrap();
    assert_eq!(
        get(&crm, &token, fresh, &["odata.track-changes"])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn throttle_fault_answers_429_with_retry_after_once() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    crm.inject(Fault::Throttle {
        retry_after_secs: 7,
    });
    crm.inject(Fault::Unavailable);

    let throttled = get(&crm, &token, "accounts?$select=name", &[]).await;
    assert_eq!(throttled.status(), 429);
    assert_eq!(throttled.headers()["retry-after"], "7");
    let body: Value = throttled.json().await.unwrap();
    assert_eq!(error_code(&body), "0x80072322");
    assert_eq!(
        body["error"]["message"],
        "Number of requests exceeded the limit of 6000 over time window of 300 seconds."
    );

    let unavailable = get(&crm, &token, "accounts?$select=name", &[]).await;
    assert_eq!(unavailable.status(), 503);
    assert!(
        unavailable
            .text()
            .await
            .unwrap()
            .contains("Service Unavailable")
    );

    let ok = get_json(&crm, &token, "accounts?$select=name", &[]).await;
    assert_eq!(ok["value"].as_array().unwrap().len(), 12);
    assert_eq!(crm.pending_faults(), 0);
    assert_eq!(
        crm.throttled_requests(),
        ThrottleCounts {
            number_of_requests: 1,
            ..ThrottleCounts::default()
        }
    );
}

#[tokio::test]
async fn unknown_column_set_and_entity_are_refused_like_dataverse() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;

    let column = get(&crm, &token, "accounts?$select=name,nosuchcolumn", &[]).await;
    assert_eq!(column.status(), 400);
    let body: Value = column.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "0x80060888", "message": "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.account'."}})
    );

    let set = get(&crm, &token, "acounts?$select=name", &[]).await;
    assert_eq!(set.status(), 404);
    let body: Value = set.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Resource not found for the segment 'acounts'."
    );

    let entity = get(
        &crm,
        &token,
        "EntityDefinitions(LogicalName='acount')?$select=LogicalName",
        &[],
    )
    .await;
    assert_eq!(entity.status(), 404);
}

#[tokio::test]
async fn metadata_describes_tables_lookups_dates_and_option_sets() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;

    let contact = get_json(
        &crm,
        &token,
        "EntityDefinitions(LogicalName='contact')?$select=LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled&$expand=Attributes($select=LogicalName,AttributeType,AttributeTypeName,IsValidForRead,AttributeOf)",
        &[],
    )
    .await;
    assert_eq!(contact["EntitySetName"], "contacts");
    assert_eq!(contact["PrimaryIdAttribute"], "contactid");
    assert_eq!(contact["PrimaryNameAttribute"], "fullname");
    assert_eq!(contact["ChangeTrackingEnabled"], true);
    let attributes = contact["Attributes"].as_array().unwrap();
    let attr = |name: &str| {
        attributes
            .iter()
            .find(|a| a["LogicalName"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(attr("parentcustomerid")["AttributeType"], "Customer");
    assert_eq!(
        attr("parentcustomerid")["@odata.type"],
        "#Microsoft.Dynamics.CRM.LookupAttributeMetadata"
    );
    assert_eq!(
        attr("parentcustomeridname")["AttributeOf"],
        "parentcustomerid"
    );
    assert_eq!(
        attr("fullname")["AttributeTypeName"],
        json!({"Value": "StringType"})
    );
    assert_eq!(attr("annualincome")["AttributeType"], "Money");

    let lookups = get_json(&crm, &token, "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.LookupAttributeMetadata?$select=LogicalName,Targets", &[]).await;
    let parent = lookups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "parentcustomerid")
        .unwrap();
    assert_eq!(parent["Targets"], json!(["account", "contact"]));

    let dates = get_json(&crm, &token, "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.DateTimeAttributeMetadata?$select=LogicalName,DateTimeBehavior", &[]).await;
    let behavior = |name: &str| {
        dates["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["LogicalName"] == name)
            .unwrap()["DateTimeBehavior"]
            .clone()
    };
    assert_eq!(behavior("birthdate"), json!({"Value": "DateOnly"}));
    assert_eq!(behavior("modifiedon"), json!({"Value": "UserLocal"}));

    let picklists = get_json(&crm, &token, "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)", &[]).await;
    let industry = &picklists["value"][0];
    assert_eq!(industry["LogicalName"], "industrycode");
    assert_eq!(industry["OptionSet"]["Options"][0]["Value"], 1);
    assert_eq!(
        industry["OptionSet"]["Options"][0]["Label"]["UserLocalizedLabel"]["Label"],
        "Accounting"
    );

    let all = get_json(&crm, &token, "EntityDefinitions?$select=LogicalName,EntitySetName,IsPrivate,TableType,ChangeTrackingEnabled", &[]).await;
    let names: Vec<&str> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["LogicalName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["systemuser", "account", "contact"]);
    assert_eq!(all["value"][0]["ChangeTrackingEnabled"], false);
}

#[tokio::test]
async fn custom_tables_can_be_defined_and_filled() {
    let crm = StandIn::start().await;
    crm.add_entity(
        EntityDef::new("new_project", "new_projects", "new_projectid")
            .with_primary_name("new_name")
            .with_change_tracking(false)
            .with_attribute(AttributeDef::new("new_budget", AttributeType::Decimal))
            .with_attribute(AttributeDef::date_only("new_start")),
    );
    let id = crm.upsert("new_project", json!({"new_name": "Apollo", "new_budget": "1234567.1234567890", "new_start": "2024-07-01"}));
    let token = crm.issue_access_token();
    let body = get_json(
        &crm,
        &token,
        &format!("new_projects({id})?$select=new_name,new_budget"),
        &[],
    )
    .await;
    assert_eq!(body["new_name"], "Apollo");
    assert_eq!(body["new_projectid"], id.as_str());
    assert!(
        body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("$metadata#new_projects(new_name,new_budget)/$entity")
    );
}

#[tokio::test]
async fn large_deltas_are_paged_and_end_with_a_delta_link() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let prefer = ["odata.track-changes", "odata.maxpagesize=2"];
    let mut url = "contacts?$select=lastname".to_owned();
    let delta_link = loop {
        let body = get_json(&crm, &token, &url, &prefer).await;
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break body["@odata.deltaLink"].as_str().unwrap().to_owned(),
        }
    };
    let ids: Vec<String> = crm
        .rows("contact")
        .iter()
        .take(3)
        .map(|r| r["contactid"].as_str().unwrap().to_owned())
        .collect();
    crm.upsert(
        "contact",
        json!({"contactid": ids[0], "lastname": "Changed"}),
    );
    crm.upsert(
        "contact",
        json!({"contactid": ids[1], "lastname": "Changed too"}),
    );
    crm.delete("contact", &ids[2]);

    let first = get_json(&crm, &token, &delta_link, &prefer).await;
    assert_eq!(first["value"].as_array().unwrap().len(), 2);
    assert!(first.get("@odata.deltaLink").is_none());
    // A change made while paging waits for the next delta instead of shifting pages.
    crm.upsert(
        "contact",
        json!({"contactid": ids[0], "lastname": "Changed again"}),
    );
    let second = get_json(
        &crm,
        &token,
        first["@odata.nextLink"].as_str().unwrap(),
        &prefer,
    )
    .await;
    assert_eq!(
        second["value"],
        json!([{
            "@odata.context": format!("{}$metadata#contacts/$deletedEntity", crm.web_api_url()),
            "id": ids[2],
            "reason": "deleted"
        }])
    );
    let next = get_json(
        &crm,
        &token,
        second["@odata.deltaLink"].as_str().unwrap(),
        &prefer,
    )
    .await;
    assert_eq!(next["value"].as_array().unwrap().len(), 1);
    assert_eq!(next["value"][0]["lastname"], "Changed again");
}

/// Every row of a read, following next links.
async fn read_all(crm: &StandIn, token: &str, url: &str, prefer: &[&str]) -> Vec<Value> {
    let mut url = url.to_owned();
    let mut rows = Vec::new();
    loop {
        let body = get_json(crm, token, &url, prefer).await;
        rows.extend(body["value"].as_array().unwrap().iter().cloned());
        match body["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return rows,
        }
    }
}

fn ids(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["accountid"].as_str().unwrap().to_owned())
        .collect()
}

/// SQL Server's uniqueidentifier order as the notes put it, independently of the stand-in:
/// the last group, then the fourth, then the third, second and first with their byte pairs
/// read right to left.
fn sql_key(id: &str) -> Vec<&str> {
    let groups: Vec<&str> = id.split('-').collect();
    let order: [(usize, &[usize]); 5] = [
        (4, &[0, 1, 2, 3, 4, 5]),
        (3, &[0, 1]),
        (2, &[1, 0]),
        (1, &[1, 0]),
        (0, &[3, 2, 1, 0]),
    ];
    let mut key = Vec::new();
    for (group, pairs) in order {
        let text: &str = groups[group];
        key.extend(pairs.iter().map(|&i| &text[2 * i..2 * i + 2]));
    }
    key
}

const ACCOUNT_COLUMNS: &str = "name,accountnumber,revenue,numberofemployees,industrycode,address1_city,websiteurl,statecode,statuscode,_primarycontactid_value,_ownerid_value,createdon,modifiedon";

#[tokio::test]
async fn generated_accounts_have_clustered_ids_a_createdon_spike_and_exact_money() {
    let crm = StandIn::with_sample_data().await;
    crm.add_accounts(
        1000,
        AccountShape {
            clusters: 3,
            createdon_spike: 0.4,
        },
    );
    let token = token(&crm).await;
    let rows = read_all(
        &crm,
        &token,
        &format!("accounts?$select={ACCOUNT_COLUMNS}&$filter=startswith(accountnumber,'AC-')"),
        &["odata.maxpagesize=300"],
    )
    .await;
    assert_eq!(rows.len(), 1000);
    let all = ids(&rows);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 1000);

    // Three clusters by last group; within each, ids rise in SQL order in insertion order.
    let mut clusters: HashMap<&str, Vec<&String>> = HashMap::new();
    for id in &all {
        clusters.entry(&id[24..]).or_default().push(id);
    }
    assert_eq!(clusters.len(), 3, "{:?}", clusters.keys());
    for members in clusters.values() {
        assert!(members.len() > 50);
        assert!(members.windows(2).all(|w| sql_key(w[0]) < sql_key(w[1])));
        let constant = |id: &str| id[14..].to_owned();
        assert!(
            members
                .iter()
                .all(|id| constant(id) == constant(members[0]))
        );
    }

    // 400 rows share one createdon second; no other second holds more than one row.
    let mut per_second: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        *per_second
            .entry(row["createdon"].as_str().unwrap())
            .or_default() += 1;
    }
    let mut counts: Vec<usize> = per_second.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts.last(), Some(&400));
    assert_eq!(counts[counts.len() - 2], 1);

    // 13 columns besides the id, each with varied values.
    let stored = crm.rows("account");
    let generated: Vec<&Value> = stored
        .iter()
        .filter(|r| r["accountnumber"].as_str().unwrap().starts_with("AC-"))
        .collect();
    assert_eq!(
        generated[0].as_object().unwrap().len(),
        15,
        "14 columns and the etag"
    );
    for column in ACCOUNT_COLUMNS.split(',') {
        let values: HashSet<String> = rows.iter().map(|r| r[column].to_string()).collect();
        assert!(values.len() > 1, "{column} is always {values:?}");
    }

    // Money goes out digit for digit, as the literal stored.
    let body = get(
        &crm,
        &token,
        "accounts?$select=revenue&$filter=startswith(accountnumber,'AC-')",
        &[],
    )
    .await
    .text()
    .await
    .unwrap();
    let literals: Vec<&str> = generated
        .iter()
        .filter_map(|r| r["revenue"].as_str())
        .collect();
    assert!(literals.len() > 800);
    assert!(
        literals
            .iter()
            .all(|l| l.split_once('.').unwrap().1.len() == 4)
    );
    assert!(literals.iter().any(|l| l.len() >= 17), "some beyond f64");
    for literal in literals {
        assert!(
            body.contains(&format!("\"revenue\":{literal},")),
            "{literal}"
        );
    }
}

#[tokio::test]
async fn uniqueidentifier_filters_and_orderby_follow_sql_server_order() {
    let crm = StandIn::start().await;
    crm.add_accounts(600, AccountShape::default());
    let token = crm.issue_access_token();
    let prefer = ["odata.maxpagesize=250"];

    let ordered = ids(&read_all(
        &crm,
        &token,
        "accounts?$select=accountid&$orderby=accountid",
        &prefer,
    )
    .await);
    let mut expected = ordered.clone();
    expected.sort_by(|a, b| sql_key(a).cmp(&sql_key(b)));
    assert_eq!(ordered, expected);
    let mut text_order = ordered.clone();
    text_order.sort();
    assert_ne!(ordered, text_order, "text order would differ");
    let descending = ids(&read_all(
        &crm,
        &token,
        "accounts?$select=accountid&$orderby=accountid desc",
        &prefer,
    )
    .await);
    assert_eq!(
        descending,
        ordered.iter().rev().cloned().collect::<Vec<_>>()
    );

    // Boundaries inside a cluster, at a cluster's edge, and where the first group carries
    // into the second (the second cluster's ids go from `...-f995-...` to `...-fa95-...`).
    let carry = ordered
        .iter()
        .rposition(|id| id.contains("-f995-"))
        .unwrap();
    assert!(ordered[carry + 1].contains("-fa95-"));
    let edge = (1..ordered.len())
        .find(|&i| ordered[i][24..] != ordered[i - 1][24..])
        .unwrap();
    for at in [1, 299, carry, carry + 1, edge, edge - 1] {
        let b = &ordered[at];
        let read = |op: &str| {
            let url =
                format!("accounts?$select=accountid&$filter=accountid {op} {b}&$orderby=accountid");
            let (crm, token) = (&crm, &token);
            async move { ids(&read_all(crm, token, &url, &prefer).await) }
        };
        assert_eq!(read("gt").await, ordered[at + 1..], "gt {b}");
        assert_eq!(read("ge").await, ordered[at..], "ge {b}");
        assert_eq!(read("lt").await, ordered[..at], "lt {b}");
        assert_eq!(read("le").await, ordered[..=at], "le {b}");
        assert_eq!(read("eq").await, ordered[at..=at], "eq {b}");
    }
    // A partition as a range: exactly the ids between its bounds.
    let range = ids(&read_all(
        &crm,
        &token,
        &format!(
            "accounts?$select=accountid&$filter=accountid gt {} and accountid le {}",
            ordered[100], ordered[400]
        ),
        &prefer,
    )
    .await);
    let mut range_sorted = range.clone();
    range_sorted.sort_by(|a, b| sql_key(a).cmp(&sql_key(b)));
    assert_eq!(range_sorted, ordered[101..=400]);
}

#[tokio::test]
async fn dop_hint_is_on_every_web_api_response_once_set() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let hint = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-ms-dop-hint")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(hint(&get(&crm, &token, "WhoAmI", &[]).await), None);

    crm.set_dop_hint(Some(4));
    for url in [
        "WhoAmI",
        "accounts?$select=name",
        "acounts",
        "EntityDefinitions(LogicalName='account')?$select=LogicalName",
    ] {
        assert_eq!(
            hint(&get(&crm, &token, url, &[]).await).as_deref(),
            Some("4"),
            "{url}"
        );
    }
    let anonymous = client()
        .get(format!("{}WhoAmI", crm.web_api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(hint(&anonymous).as_deref(), Some("4"));
    assert_eq!(
        hint(&client_credentials(&crm, StandIn::CLIENT_SECRET).await),
        None,
        "not on the token endpoint"
    );

    crm.set_dop_hint(None);
    assert_eq!(hint(&get(&crm, &token, "WhoAmI", &[]).await), None);
}

/// How long a GET takes, checking it succeeded.
async fn timed(crm: &StandIn, token: &str, url: &str, prefer: &[&str]) -> Duration {
    let started = Instant::now();
    let response = get(crm, token, url, prefer).await;
    assert_eq!(response.status(), 200, "{url}");
    response.bytes().await.unwrap();
    started.elapsed()
}

#[tokio::test]
async fn server_time_delays_pages_in_proportion_to_rows_and_columns() {
    let crm = StandIn::start().await;
    crm.add_accounts(2000, AccountShape::default());
    let token = crm.issue_access_token();
    let all_columns = format!("accounts?$select={ACCOUNT_COLUMNS}");
    let ids_only = "accounts?$select=accountid";
    let page = |n: usize| format!("odata.maxpagesize={n}");
    let untimed = timed(&crm, &token, &all_columns, &[&page(1000)]).await;

    // A full page (5000 rows of 13+ columns) would take 1 s: 1000 rows take 200 ms, 500 rows
    // 100 ms, and 1000 ids 50 ms.
    crm.set_server_time(Duration::from_secs(1));
    let full = timed(&crm, &token, &all_columns, &[&page(1000)]).await;
    let half = timed(&crm, &token, &all_columns, &[&page(500)]).await;
    let ids = timed(&crm, &token, ids_only, &[&page(1000)]).await;
    let loose = Duration::from_millis(1500);
    assert!(
        full >= Duration::from_millis(200) && full < Duration::from_millis(200) + untimed + loose,
        "{full:?}"
    );
    assert!(
        half >= Duration::from_millis(100) && half < full,
        "{half:?} vs {full:?}"
    );
    assert!(
        ids >= Duration::from_millis(50) && ids < full,
        "{ids:?} vs {full:?}"
    );

    // Pages wait concurrently: the instance is not blocked while one is delayed. Four pages
    // of 1 s each take about 1 s together, not 4 s.
    crm.set_server_time(Duration::from_secs(5));
    let thousand = page(1000);
    let prefer = [thousand.as_str()];
    let started = Instant::now();
    let four = (0..4).map(|_| timed(&crm, &token, &all_columns, &prefer));
    futures::future::join_all(four).await;
    let together = started.elapsed();
    assert!(
        together >= Duration::from_secs(1) && together < Duration::from_secs(2) + untimed * 4,
        "{together:?}"
    );

    // WhoAmI and metadata cost nothing.
    assert!(timed(&crm, &token, "WhoAmI", &[]).await < Duration::from_millis(200) + untimed);
}

async fn refusal(response: reqwest::Response) -> (u64, String, String) {
    assert_eq!(response.status(), 429);
    let retry_after = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    (retry_after, error_code(&body).to_owned(), message)
}

#[tokio::test]
async fn concurrency_limit_refuses_one_request_too_many_with_429() {
    let crm = StandIn::start().await;
    crm.add_accounts(300, AccountShape::default());
    let token = crm.issue_access_token();
    // 250 rows of 13+ columns: 1 s each.
    crm.set_server_time(Duration::from_secs(20));
    crm.set_limits(ServiceLimits {
        concurrent_requests: Some(2),
        ..ServiceLimits::default()
    });
    let url = format!("accounts?$select={ACCOUNT_COLUMNS}");
    let three = (0..3).map(|_| get(&crm, &token, &url, &["odata.maxpagesize=250"]));
    let mut responses = futures::future::join_all(three).await;
    responses.sort_by_key(|r| r.status());
    let refused = responses.pop().unwrap();
    assert!(responses.iter().all(|r| r.status() == 200));
    let (retry_after, code, message) = refusal(refused).await;
    assert_eq!(code, "0x80072326");
    assert_eq!(
        message,
        "Number of concurrent requests exceeded the limit of 2."
    );
    assert_eq!(retry_after, 1);
    assert_eq!(
        crm.throttled_requests(),
        ThrottleCounts {
            concurrency: 1,
            ..ThrottleCounts::default()
        }
    );

    // Once they finished, requests go through again.
    assert_eq!(
        get(&crm, &token, &url, &["odata.maxpagesize=250"])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn execution_time_limit_refuses_what_would_exceed_the_budget_with_429() {
    let crm = StandIn::start().await;
    crm.add_accounts(300, AccountShape::default());
    let token = crm.issue_access_token();
    crm.set_server_time(Duration::from_secs(20));
    crm.set_limits(ServiceLimits {
        window: Duration::from_secs(60),
        execution_time: Some(Duration::from_millis(1500)),
        concurrent_requests: None,
    });
    let url = format!("accounts?$select={ACCOUNT_COLUMNS}");
    let page = ["odata.maxpagesize=250"];
    assert_eq!(get(&crm, &token, &url, &page).await.status(), 200);
    // 1 s used of 1.5 s: another second would exceed it until the first leaves the window.
    let (retry_after, code, message) = refusal(get(&crm, &token, &url, &page).await).await;
    assert_eq!(code, "0x80072321");
    assert!((55..=60).contains(&retry_after), "{retry_after}");
    assert!(message.starts_with("Combined execution time of incoming requests exceeded limit of 1500 milliseconds over time window of 60 seconds."), "{message}");
    // A cheaper page still fits: 10 ids cost 10 ms.
    assert_eq!(
        get(
            &crm,
            &token,
            "accounts?$select=accountid",
            &["odata.maxpagesize=10"]
        )
        .await
        .status(),
        200
    );
    assert_eq!(crm.throttled_requests().execution_time, 1);
    assert_eq!(crm.throttled_requests().total(), 1);
    crm.clear_requests();
    assert_eq!(crm.throttled_requests(), ThrottleCounts::default());
}

#[tokio::test]
async fn retrieve_total_record_count_counts_each_table_and_refuses_an_unknown_one() {
    let crm = StandIn::with_sample_data().await;
    let token = token(&crm).await;
    let base = crm.web_api_url();

    let counts = get_json(
        &crm,
        &token,
        &format!(
            "{base}RetrieveTotalRecordCount(EntityNames=@p)?@p=%5B%27account%27,%27contact%27%5D"
        ),
        &[],
    )
    .await;

    let collection = &counts["EntityRecordCountCollection"];
    assert_eq!(collection["Keys"], json!(["account", "contact"]));
    assert_eq!(
        collection["Values"],
        json!([crm.rows("account").len(), crm.rows("contact").len()])
    );
    let unknown = get(
        &crm,
        &token,
        &format!("{base}RetrieveTotalRecordCount(EntityNames=@p)?@p=%5B%27acount%27%5D"),
        &[],
    )
    .await;
    assert_eq!(unknown.status(), 400);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(error_code(&body), "0x80040217");
}
