//! Many `account` rows at once, shaped like a real table: ids sequential within a few clusters,
//! an import's `createdon` spike, 13 varied columns.

use super::guid::SqlGuid;
use super::sample;
use super::state::{Row, State};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use std::ops::Range;

/// The shape of the rows [`StandIn::add_accounts`](super::StandIn::add_accounts) adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccountShape {
    /// How many id clusters the rows fall into (the web servers that handed the ids out): each
    /// has its own constant last group, and its ids increase in SQL Server order in insertion
    /// order. The clusters interleave, the later ones taking more rows. Default: 3.
    pub clusters: usize,
    /// The share of the added rows (`0.0..=1.0`, rounded to whole rows) created in one second,
    /// as an import makes; they are inserted together in the middle of the batch. The other
    /// rows are created a minute apart. Default: 0.2.
    pub createdon_spike: f64,
}

impl Default for AccountShape {
    fn default() -> Self {
        AccountShape {
            clusters: 3,
            createdon_spike: 0.2,
        }
    }
}

/// The Web API properties of a generated account, the primary id first.
const PROPERTIES: [&str; 14] = [
    "accountid",
    "name",
    "accountnumber",
    "revenue",
    "numberofemployees",
    "industrycode",
    "address1_city",
    "websiteurl",
    "statecode",
    "statuscode",
    "_primarycontactid_value",
    "_ownerid_value",
    "createdon",
    "modifiedon",
];

const COMPANIES: [&str; 16] = [
    "Contoso",
    "Fabrikam",
    "Northwind",
    "Adventure Works",
    "Litware",
    "Tailspin",
    "Wingtip",
    "Proseware",
    "Woodgrove",
    "Alpine",
    "Coho",
    "Fourth Coffee",
    "Lamna",
    "Relecloud",
    "Trey",
    "Wide World",
];

const KINDS: [&str; 12] = [
    "Ltd",
    "Inc.",
    "Traders",
    "Holdings",
    "Logistics",
    "Pharmaceuticals",
    "Consulting",
    "Manufacturing",
    "Bank",
    "Foods",
    "Energy",
    "Healthcare",
];

const CITIES: [&str; 16] = [
    "Redmond",
    "Seattle",
    "London",
    "Paris",
    "München",
    "Zürich",
    "São Paulo",
    "Toronto",
    "Sydney",
    "Tokyo",
    "Singapore",
    "Dublin",
    "Austin",
    "Oslo",
    "Kraków",
    "Cape Town",
];

/// The first generated `createdon`: 2019-03-04T08:00:00Z.
const FIRST_CREATED: i64 = 1_551_686_400;

/// The ids one web server hands out: a 48-bit counter in the first two groups, the rest fixed.
struct Cluster {
    counter: u64,
    third: u16,
    fourth: u16,
    node: u64,
}

impl Cluster {
    /// The first two clusters look like the ids in the notes (the second one carries from the
    /// first group into the second after 128 rows); later ones are derived from `k`.
    fn new(k: usize) -> Self {
        match k {
            0 => Cluster::from_text(0x1800_bd86, 0xad1f, 0xef11, 0x840b, 0x000d_3abf_969a),
            1 => Cluster::from_text(0x80ff_ffff, 0xf995, 0xf011, 0xb41b, 0x7c1e_5212_7beb),
            _ => {
                let h = mix(k as u64);
                Cluster::from_text(
                    h as u32,
                    (h >> 32) as u16,
                    if k % 2 == 0 { 0xef11 } else { 0xf011 },
                    0x8000 | ((h >> 48) as u16 & 0x3fff),
                    // Distinct per cluster: an odd multiplier is a bijection on 24 bits.
                    0x6045_bd00_0000 | ((k as u64).wrapping_mul(0x9e37_79b1) & 0xff_ffff),
                )
            }
        }
    }

    /// A cluster whose first id reads `first-second-third-fourth-node` as text.
    fn from_text(first: u32, second: u16, third: u16, fourth: u16, node: u64) -> Self {
        // In SQL Server order the first two groups are compared right byte pair first, so the
        // counter is the text with each group's bytes reversed, the second group above.
        let counter = u64::from(second.swap_bytes()) << 32 | u64::from(first.swap_bytes());
        Cluster {
            counter,
            third,
            fourth,
            node,
        }
    }

    /// The id `step` after the cluster's first.
    fn id(&self, step: u64) -> String {
        let counter = self.counter.wrapping_add(step) & 0xffff_ffff_ffff;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (counter as u32).swap_bytes(),
            ((counter >> 32) as u16).swap_bytes(),
            self.third,
            self.fourth,
            self.node
        )
    }
}

/// SplitMix64: cheap, well-spread pseudo-random bits derived from `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Which cluster row `g` goes to: cluster `k` takes `k + 1` shares.
fn cluster_of(g: u64, clusters: usize) -> usize {
    let shares = (clusters * (clusters + 1) / 2) as u64;
    let mut pick = mix(g ^ 0xc1) % shares;
    (0..clusters)
        .find(|&k| {
            let share = k as u64 + 1;
            let here = pick < share;
            pick = pick.saturating_sub(share);
            here
        })
        .unwrap_or(0)
}

/// `2019-03-04T08:00:00Z` (without chrono's format strings, which are slow in debug builds).
fn timestamp(unix: i64) -> Json {
    use chrono::{Datelike as _, Timelike as _};
    let at = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
    Json::String(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

/// A Money literal with four decimals, from a few thousand to about a trillion; some have
/// more significant digits than an `f64` holds.
fn revenue(h: u64) -> Json {
    if h % 10 == 0 {
        return Json::Null;
    }
    let whole = (h >> 8) % 10u64.pow(4 + (h >> 4) as u32 % 9);
    let fraction = if (h >> 40) % 5 == 0 {
        (h >> 44) % 10_000
    } else {
        (h >> 44) % 100 * 100
    };
    Json::String(format!("{whole}.{fraction:04}"))
}

/// `Some(value)` on nine rows in ten, `null` otherwise.
fn mostly(h: u64, value: impl Into<Json>) -> Json {
    if h % 10 == 9 {
        Json::Null
    } else {
        value.into()
    }
}

/// What stays the same for every row of one [`add_accounts`] call.
struct Batch {
    first: u64,
    clusters: Vec<Cluster>,
    spike: Range<usize>,
    owners: Vec<String>,
    contacts: Vec<String>,
}

impl Batch {
    fn created(&self, i: usize) -> i64 {
        let at = |g: u64| FIRST_CREATED + g as i64 * 60 + (mix(g ^ 0xc4) % 60) as i64;
        if self.spike.contains(&i) {
            at(self.first + self.spike.start as u64)
        } else {
            at(self.first + i as u64)
        }
    }

    /// The row inserted `i`-th in this batch, with change version `version` and insertion
    /// sequence `seq`.
    fn row(&self, i: usize, version: u64, seq: u64) -> Row {
        let g = self.first + i as u64;
        let h = mix(g);
        let id = self.clusters[cluster_of(g, self.clusters.len())].id(g);
        let company = COMPANIES[h as usize % COMPANIES.len()];
        let kind = KINDS[(h >> 8) as usize % KINDS.len()];
        let slug: String = company
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let created = self.created(i);
        let modified = match h >> 16 & 0xff {
            0..=150 => created,
            late => created + i64::from(late as u8) * 37_931,
        };
        let state = i64::from((h >> 24) % 12 == 0);
        let employees = 10u64.pow(1 + (h >> 28) as u32 % 5);
        let mut lookup_targets = HashMap::new();
        let contact = pick(&self.contacts, h >> 32, 3);
        if contact.is_some() {
            lookup_targets.insert(PROPERTIES[10].to_owned(), "contact".to_owned());
        }
        let owner = pick(&self.owners, h >> 36, 0);
        if owner.is_some() {
            lookup_targets.insert(PROPERTIES[11].to_owned(), "systemuser".to_owned());
        }
        let values: [Json; 14] = [
            Json::String(id.clone()),
            Json::String(format!("{company} {kind}")),
            Json::String(format!("AC-{:07}", 1_000_000 + g)),
            revenue(mix(g ^ 0xc2)),
            mostly(h >> 40, 1 + (h >> 44) % employees),
            mostly(h >> 48, 1 + (h >> 52) % 12),
            Json::String(CITIES[(h >> 56) as usize % CITIES.len()].to_owned()),
            mostly(h >> 12, format!("https://www.{}.com", slug.to_lowercase())),
            Json::from(state),
            Json::from(state + 1),
            contact.map_or(Json::Null, Json::String),
            owner.map_or(Json::Null, Json::String),
            timestamp(created),
            timestamp(modified),
        ];
        let fields: Map<String, Json> = PROPERTIES
            .iter()
            .map(|p| (*p).to_owned())
            .zip(values)
            .collect();
        Row {
            key: SqlGuid::parse(&id),
            id,
            seq,
            version,
            fields,
            lookup_targets,
            formatted: HashMap::new(),
        }
    }
}

/// One of `ids` (`None` when there are none, or on `skip` rows in ten).
fn pick(ids: &[String], h: u64, skip: u64) -> Option<String> {
    if ids.is_empty() || h % 10 < skip {
        return None;
    }
    Some(ids[(h >> 4) as usize % ids.len()].clone())
}

/// The rows of `entity`'s ids, if the table exists.
fn ids_of(state: &State, entity: &str) -> Vec<String> {
    state
        .table(entity)
        .map(|t| t.rows.iter().map(|r| r.id.clone()).collect())
        .unwrap_or_default()
}

/// Adds `n` generated accounts (adding the sample `account` table if there is none).
pub(crate) fn add_accounts(state: &mut State, n: usize, shape: AccountShape) {
    assert!(
        shape.clusters > 0,
        "stand-in: AccountShape::clusters must be at least 1"
    );
    assert!(
        (0.0..=1.0).contains(&shape.createdon_spike),
        "stand-in: AccountShape::createdon_spike must be within 0.0..=1.0, got {}",
        shape.createdon_spike
    );
    if state.table("account").is_none() {
        state.add_entity(sample::account());
    }
    let def = &state.table("account").expect("added").def;
    if let Some(missing) = PROPERTIES.iter().find(|p| def.property(p).is_none()) {
        panic!(
            "stand-in: table `account` has no column `{missing}`; add_accounts needs the sample account columns"
        );
    }
    let spike_rows = ((n as f64 * shape.createdon_spike).round() as usize).min(n);
    let spike_start = (n - spike_rows) / 2;
    let batch = Batch {
        first: state.generated_accounts,
        clusters: (0..shape.clusters).map(Cluster::new).collect(),
        spike: spike_start..spike_start + spike_rows,
        owners: ids_of(state, "systemuser"),
        contacts: ids_of(state, "contact"),
    };
    let (version, seq) = (state.version + 1, state.seq + 1);
    let rows: Vec<Row> = (0..n)
        .map(|i| batch.row(i, version + i as u64, seq + i as u64))
        .collect();
    state.version += n as u64;
    state.seq += n as u64;
    state.generated_accounts += n as u64;
    state.table_mut("account").rows.extend(rows);
}

#[cfg(test)]
mod tests {
    use super::super::guid::SqlGuid;
    use super::*;

    fn key(id: &str) -> SqlGuid {
        SqlGuid::parse(id).unwrap()
    }

    #[test]
    fn ids_read_like_the_notes_and_rise_in_sql_order() {
        let first = Cluster::new(0);
        assert_eq!(first.id(0), "1800bd86-ad1f-ef11-840b-000d3abf969a");
        assert_eq!(first.id(1), "1900bd86-ad1f-ef11-840b-000d3abf969a");
        let carrying = Cluster::new(1);
        assert_eq!(carrying.id(127), "ffffffff-f995-f011-b41b-7c1e52127beb");
        assert_eq!(carrying.id(128), "00000000-fa95-f011-b41b-7c1e52127beb");
        assert!(key(&carrying.id(127)) < key(&carrying.id(128)));
        for k in 0..6 {
            let c = Cluster::new(k);
            assert!((0..300).all(|s| key(&c.id(s)) < key(&c.id(s + 1))));
        }
    }

    #[test]
    fn clusters_share_rows_unevenly_but_all_get_some() {
        let mut counts = [0usize; 3];
        for g in 0..6000 {
            counts[cluster_of(g, 3)] += 1;
        }
        assert!(counts[0] > 600 && counts[0] < counts[1] && counts[1] < counts[2]);
    }
}
