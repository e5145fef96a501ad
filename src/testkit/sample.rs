//! The sample tables and rows of [`StandIn::with_sample_data`](super::StandIn::with_sample_data).

use super::state::{AttributeDef, EntityDef, State};
use crate::metadata::AttributeType;
use serde_json::{Value as Json, json};

/// A GUID in the shape one Dataverse environment hands out (`c76fee97-961f-ef11-840b-000d3abf969a`).
fn id(kind: u32, n: u32) -> String {
    let a = kind.wrapping_mul(0x9e37_79b9) ^ n.wrapping_mul(0x85eb_ca6b);
    format!(
        "{a:08x}-{:04x}-ef11-840b-000d3abf969a",
        (n * 0x1f3 + kind * 0x77) & 0xffff
    )
}

pub(crate) fn user_id(n: u32) -> String {
    id(8, n)
}
pub(crate) fn account_id(n: u32) -> String {
    id(1, n)
}
pub(crate) fn contact_id(n: u32) -> String {
    id(2, n)
}

fn state_options() -> [(i64, &'static str); 2] {
    [(0, "Active"), (1, "Inactive")]
}

fn status_options() -> [(i64, &'static str); 2] {
    [(1, "Active"), (2, "Inactive")]
}

/// `systemuser`: change tracking OFF (to exercise the `modifiedon` watermark fallback).
pub(crate) fn systemuser() -> EntityDef {
    EntityDef::new("systemuser", "systemusers", "systemuserid")
        .with_primary_name("fullname")
        .with_change_tracking(false)
        .with_attribute(AttributeDef::new("firstname", AttributeType::String))
        .with_attribute(AttributeDef::new("lastname", AttributeType::String))
        .with_attribute(AttributeDef::new(
            "internalemailaddress",
            AttributeType::String,
        ))
        .with_attribute(AttributeDef::new("domainname", AttributeType::String))
        .with_attribute(
            AttributeDef::new("isdisabled", AttributeType::Boolean)
                .with_options([(0, "Enabled"), (1, "Disabled")]),
        )
        .with_attribute(AttributeDef::new("createdon", AttributeType::DateTime))
        .with_attribute(AttributeDef::new("modifiedon", AttributeType::DateTime))
}

/// `account`: change tracking on.
pub(crate) fn account() -> EntityDef {
    EntityDef::new("account", "accounts", "accountid")
        .with_primary_name("name")
        .with_attribute(AttributeDef::new("accountnumber", AttributeType::String))
        .with_attribute(AttributeDef::new("revenue", AttributeType::Money))
        .with_attribute(AttributeDef::new(
            "numberofemployees",
            AttributeType::Integer,
        ))
        .with_attribute(AttributeDef::choice(
            "industrycode",
            AttributeType::Picklist,
            [
                (1, "Accounting"),
                (2, "Agriculture and Non-petrol Natural Resource Extraction"),
                (3, "Broadcasting Printing and Publishing"),
                (4, "Brokers"),
                (5, "Building Supply Retail"),
                (6, "Business Services"),
                (7, "Consulting"),
                (8, "Consumer Services"),
                (9, "Design, Direction and Creative Management"),
                (10, "Distributors, Dispatchers and Processors"),
                (11, "Doctor's Offices and Clinics"),
                (12, "Durable Manufacturing"),
            ],
        ))
        .with_attribute(AttributeDef::new("address1_city", AttributeType::String))
        .with_attribute(AttributeDef::new("websiteurl", AttributeType::String))
        .with_attribute(AttributeDef::choice(
            "statecode",
            AttributeType::State,
            state_options(),
        ))
        .with_attribute(AttributeDef::choice(
            "statuscode",
            AttributeType::Status,
            status_options(),
        ))
        .with_attribute(AttributeDef::lookup("primarycontactid", ["contact"]))
        .with_attribute(AttributeDef::new("ownerid", AttributeType::Owner))
        .with_attribute(AttributeDef::new("createdon", AttributeType::DateTime))
        .with_attribute(AttributeDef::new("modifiedon", AttributeType::DateTime))
}

/// `contact`: change tracking on.
pub(crate) fn contact() -> EntityDef {
    EntityDef::new("contact", "contacts", "contactid")
        .with_primary_name("fullname")
        .with_attribute(AttributeDef::new("firstname", AttributeType::String))
        .with_attribute(AttributeDef::new("lastname", AttributeType::String))
        .with_attribute(AttributeDef::new("emailaddress1", AttributeType::String))
        .with_attribute(AttributeDef::new("jobtitle", AttributeType::String))
        .with_attribute(AttributeDef::new(
            "parentcustomerid",
            AttributeType::Customer,
        ))
        .with_attribute(AttributeDef::date_only("birthdate"))
        .with_attribute(AttributeDef::new("annualincome", AttributeType::Money))
        .with_attribute(AttributeDef::choice(
            "statecode",
            AttributeType::State,
            state_options(),
        ))
        .with_attribute(AttributeDef::choice(
            "statuscode",
            AttributeType::Status,
            status_options(),
        ))
        .with_attribute(AttributeDef::new("ownerid", AttributeType::Owner))
        .with_attribute(AttributeDef::new("createdon", AttributeType::DateTime))
        .with_attribute(AttributeDef::new("modifiedon", AttributeType::DateTime))
}

/// A sample user: first and last name, disabled, `modifiedon`.
type UserRow = (&'static str, &'static str, bool, &'static str);

const USERS: &[UserRow] = &[
    ("Alex", "Wilber", false, "2024-05-02T08:15:00Z"),
    ("Megan", "Bowen", false, "2024-05-02T08:15:00Z"),
    ("Diego", "Siciliani", false, "2024-05-20T16:41:09Z"),
    ("Isaiah", "Langer", true, "2024-06-01T07:02:44Z"),
];

/// name, number, revenue literal, employees, industry, city, website, state, owner, modifiedon
type AccountRow = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<i64>,
    Option<i64>,
    &'static str,
    Option<&'static str>,
    i64,
    u32,
    &'static str,
);

const ACCOUNTS: &[AccountRow] = &[
    (
        "Contoso Ltd",
        "ACC-1001",
        Some("5000000.0000"),
        Some(1200),
        Some(6),
        "Redmond",
        Some("https://www.contoso.com"),
        0,
        1,
        "2024-06-12T14:13:25Z",
    ),
    (
        "Fabrikam, Inc.",
        "ACC-1002",
        Some("922337203685477.5807"),
        Some(98000),
        Some(12),
        "Seattle",
        Some("https://www.fabrikam.com"),
        0,
        1,
        "2024-06-12T14:13:25Z",
    ),
    (
        "Adventure Works Cycles",
        "ACC-1003",
        Some("13500000.0000"),
        Some(420),
        Some(5),
        "Bothell",
        Some("https://www.adventure-works.com"),
        0,
        2,
        "2024-06-12T14:13:25Z",
    ),
    (
        "Northwind Traders",
        "ACC-1004",
        Some("2750000.5000"),
        Some(87),
        Some(10),
        "London",
        Some("https://northwindtraders.com"),
        0,
        2,
        "2024-06-13T09:01:02Z",
    ),
    (
        "Tailspin Toys",
        "ACC-1005",
        Some("812000.0000"),
        Some(35),
        Some(8),
        "Portland",
        None,
        0,
        3,
        "2024-06-13T09:30:47Z",
    ),
    (
        "Wingtip Toys",
        "ACC-1006",
        None,
        Some(12),
        Some(8),
        "Vancouver",
        Some("https://wingtiptoys.com"),
        1,
        3,
        "2024-06-14T11:45:00Z",
    ),
    (
        "Litware, Inc.",
        "ACC-1007",
        Some("44000000.0000"),
        Some(2300),
        Some(7),
        "Chicago",
        Some("https://www.litwareinc.com"),
        0,
        1,
        "2024-06-15T15:20:19Z",
    ),
    (
        "A. Datum Corporation",
        "ACC-1008",
        Some("61000000.2500"),
        Some(5100),
        Some(1),
        "Boston",
        Some("https://www.adatum.com"),
        0,
        2,
        "2024-06-17T10:10:10Z",
    ),
    (
        "Coho Winery",
        "ACC-1009",
        Some("3100000.0000"),
        Some(64),
        Some(2),
        "Napa",
        Some("https://www.cohowinery.com"),
        0,
        1,
        "2024-06-18T13:05:55Z",
    ),
    (
        "Blue Yonder Airlines",
        "ACC-1010",
        Some("150000000.0000"),
        Some(11800),
        Some(6),
        "Dallas",
        Some("https://www.blueyonderairlines.com"),
        0,
        3,
        "2024-06-20T08:00:00Z",
    ),
    (
        "Trey Research",
        "ACC-1011",
        Some("940500.7500"),
        None,
        Some(7),
        "Cambridge",
        None,
        0,
        2,
        "2024-06-21T17:59:31Z",
    ),
    (
        "Alpine Ski House",
        "ACC-1012",
        Some("0.0000"),
        Some(18),
        None,
        "Zermatt",
        Some("https://www.alpineskihouse.com"),
        1,
        1,
        "2024-06-22T12:00:00Z",
    ),
];

/// first, last, job title, parent ("a" account n / "c" contact n / none), birthdate, income,
/// state, owner, modifiedon
type ContactRow = (
    &'static str,
    &'static str,
    &'static str,
    Option<(char, u32)>,
    Option<&'static str>,
    Option<&'static str>,
    i64,
    u32,
    &'static str,
);

const CONTACTS: &[ContactRow] = &[
    (
        "Yvonne",
        "McKay",
        "Purchasing Manager",
        Some(('a', 1)),
        Some("1984-03-17"),
        Some("98000.0000"),
        0,
        1,
        "2024-06-12T14:13:28Z",
    ),
    (
        "Susanna",
        "Stubberod",
        "CFO",
        Some(('a', 1)),
        Some("1979-11-02"),
        Some("245000.0000"),
        0,
        1,
        "2024-06-12T14:13:28Z",
    ),
    (
        "Nancy",
        "Anderson",
        "Buyer",
        Some(('a', 2)),
        Some("1990-07-23"),
        Some("67500.5000"),
        0,
        2,
        "2024-06-12T14:13:28Z",
    ),
    (
        "Maria",
        "Campbell",
        "Owner",
        Some(('a', 3)),
        None,
        Some("120000.0000"),
        0,
        2,
        "2024-06-12T14:20:00Z",
    ),
    (
        "Sidney",
        "Higa",
        "Engineer",
        Some(('a', 4)),
        Some("1988-01-30"),
        None,
        0,
        3,
        "2024-06-12T15:00:01Z",
    ),
    (
        "Scott",
        "Konersmann",
        "Consultant",
        Some(('a', 5)),
        Some("1975-05-05"),
        Some("88000.0000"),
        0,
        3,
        "2024-06-13T08:00:00Z",
    ),
    (
        "Robert",
        "Lyon",
        "Account Executive",
        Some(('a', 6)),
        Some("1992-12-12"),
        Some("71000.0000"),
        1,
        1,
        "2024-06-13T08:00:00Z",
    ),
    (
        "Paul",
        "Cannon",
        "Sales Manager",
        Some(('a', 7)),
        None,
        Some("132000.0000"),
        0,
        1,
        "2024-06-13T10:15:42Z",
    ),
    (
        "Rene",
        "Valdes",
        "Analyst",
        Some(('a', 8)),
        Some("1995-09-09"),
        Some("58000.0000"),
        0,
        2,
        "2024-06-13T10:15:42Z",
    ),
    (
        "Patrick",
        "Sands",
        "Director",
        Some(('a', 9)),
        Some("1969-04-01"),
        Some("310000.0000"),
        0,
        2,
        "2024-06-14T09:09:09Z",
    ),
    (
        "Siobhan",
        "O'Brien",
        "Head of Procurement",
        Some(('a', 10)),
        Some("1981-03-17"),
        Some("175000.0000"),
        0,
        1,
        "2024-06-14T09:30:00Z",
    ),
    (
        "Thomas",
        "Andersen",
        "Assistant",
        Some(('c', 11)),
        Some("1998-06-21"),
        Some("42000.0000"),
        0,
        1,
        "2024-06-14T09:30:00Z",
    ),
    (
        "Jim",
        "Glynn",
        "Researcher",
        Some(('a', 11)),
        None,
        None,
        0,
        3,
        "2024-06-15T11:11:11Z",
    ),
    (
        "Christa",
        "Geller",
        "Instructor",
        Some(('a', 12)),
        Some("1986-02-28"),
        Some("51000.0000"),
        0,
        3,
        "2024-06-15T11:11:11Z",
    ),
    (
        "Ivan",
        "Komashinsky",
        "IT Manager",
        Some(('a', 2)),
        Some("1980-10-10"),
        Some("115000.0000"),
        0,
        2,
        "2024-06-16T07:45:00Z",
    ),
    (
        "Kim",
        "Abercrombie",
        "Office Manager",
        Some(('c', 1)),
        Some("1991-08-08"),
        Some("64000.0000"),
        0,
        1,
        "2024-06-16T07:45:00Z",
    ),
    (
        "Brian",
        "Cox",
        "Developer",
        Some(('a', 7)),
        None,
        Some("99000.0000"),
        0,
        1,
        "2024-06-17T13:13:13Z",
    ),
    (
        "Cathan",
        "Cook",
        "Designer",
        Some(('a', 3)),
        Some("1993-03-03"),
        Some("73000.0000"),
        0,
        2,
        "2024-06-18T18:30:00Z",
    ),
    (
        "Darren",
        "Parker",
        "Intern",
        Some(('c', 18)),
        Some("2001-01-15"),
        Some("22000.0000"),
        0,
        2,
        "2024-06-19T06:59:59Z",
    ),
    (
        "Eva",
        "Corets",
        "Controller",
        Some(('a', 8)),
        Some("1977-07-07"),
        Some("158000.0000"),
        0,
        3,
        "2024-06-19T06:59:59Z",
    ),
    (
        "Frank",
        "Lee",
        "Operations",
        Some(('a', 9)),
        None,
        Some("81000.0000"),
        1,
        3,
        "2024-06-20T10:00:00Z",
    ),
    (
        "Gabe",
        "Frost",
        "Pilot",
        Some(('a', 10)),
        Some("1983-05-19"),
        Some("190000.0000"),
        0,
        1,
        "2024-06-20T10:00:00Z",
    ),
    (
        "Heidi",
        "Steen",
        "Sommelier",
        Some(('a', 9)),
        Some("1989-11-11"),
        Some("69000.0000"),
        0,
        2,
        "2024-06-21T14:14:14Z",
    ),
    (
        "Ina",
        "Gunnarsson",
        "Ski Instructor",
        Some(('a', 12)),
        Some("1996-12-24"),
        Some("47000.0000"),
        0,
        3,
        "2024-06-22T09:00:00Z",
    ),
    (
        "Jon",
        "Morris",
        "Freelancer",
        None,
        None,
        None,
        0,
        1,
        "2024-06-22T09:00:00Z",
    ),
];

/// Fills `state` with the sample tables and rows.
pub(crate) fn load(state: &mut State) {
    state.add_entity(systemuser());
    state.add_entity(account());
    state.add_entity(contact());
    for (n, user) in USERS.iter().enumerate() {
        state.upsert("systemuser", user_row(n as u32 + 1, user));
    }
    // Contacts first (accounts point at them), then accounts; parents may be either.
    for (n, contact) in CONTACTS.iter().enumerate() {
        state.upsert("contact", contact_row(n as u32 + 1, contact));
    }
    for (n, account) in ACCOUNTS.iter().enumerate() {
        state.upsert("account", account_row(n as u32 + 1, account));
    }
}

/// The `n`-th sample user.
fn user_row(n: u32, (first, last, disabled, modified): &UserRow) -> Json {
    json!({
        "systemuserid": user_id(n),
        "firstname": first,
        "lastname": last,
        "fullname": format!("{first} {last}"),
        "internalemailaddress": format!("{}@contoso.onmicrosoft.com", first.to_lowercase()),
        "domainname": format!("{}@contoso.onmicrosoft.com", first.to_lowercase()),
        "isdisabled": disabled,
        "createdon": "2024-05-02T08:15:00Z",
        "modifiedon": modified,
    })
}

/// The `n`-th sample contact.
fn contact_row(
    n: u32,
    (first, last, title, parent, birth, income, state_code, owner, modified): &ContactRow,
) -> Json {
    let mut row = json!({
        "contactid": contact_id(n),
        "firstname": first,
        "lastname": last,
        "fullname": format!("{first} {last}"),
        "emailaddress1": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase().replace('\'', "")),
        "jobtitle": title,
        "birthdate": birth,
        "annualincome": income,
        "statecode": state_code,
        "statuscode": state_code + 1,
        "_ownerid_value": user_id(*owner),
        "_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "systemuser",
        "createdon": "2024-06-12T14:13:17Z",
        "modifiedon": modified,
    });
    if let Some((kind, target)) = parent {
        let (target_id, table) = match kind {
            'a' => (account_id(*target), "account"),
            _ => (contact_id(*target), "contact"),
        };
        row["_parentcustomerid_value"] = Json::String(target_id);
        row["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] = json!(table);
    }
    row
}

/// The `n`-th sample account; its primary contact is the first contact whose parent it is.
fn account_row(
    n: u32,
    (name, number, revenue, employees, industry, city, web, state_code, owner, modified): &AccountRow,
) -> Json {
    let primary = CONTACTS
        .iter()
        .position(|c| c.3 == Some(('a', n)))
        .map(|i| contact_id(i as u32 + 1));
    json!({
        "accountid": account_id(n),
        "name": name,
        "accountnumber": number,
        "revenue": revenue,
        "numberofemployees": employees,
        "industrycode": industry,
        "address1_city": city,
        "websiteurl": web,
        "statecode": state_code,
        "statuscode": state_code + 1,
        "_primarycontactid_value": primary,
        "_ownerid_value": user_id(*owner),
        "createdon": "2024-06-12T14:13:25Z",
        "modifiedon": modified,
    })
}
