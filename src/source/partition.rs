//! Partitions of a table: contiguous ranges of primary ids in SQL Server's order, which
//! together cover the table exactly once, and the parallelism setting.

use super::sql_order::SqlGuid;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How many partitions a first read runs at once.
///
/// Serialized as `"auto"` or a whole number of at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Parallelism {
    /// Follow Dataverse's `x-ms-dop-hint` (as the client has seen it), at most
    /// [`MAX_AUTO_PARALLELISM`].
    #[default]
    Auto,
    /// Exactly this many partitions at once (`1`: one sequential read).
    Fixed(u16),
}

/// The most partitions [`Parallelism::Auto`] runs at once.
pub const MAX_AUTO_PARALLELISM: usize = 16;

impl Parallelism {
    /// The number of partitions to run, given the client's current concurrency limit.
    pub(crate) fn slots(self, concurrency_limit: usize) -> usize {
        match self {
            Parallelism::Auto => concurrency_limit.clamp(1, MAX_AUTO_PARALLELISM),
            Parallelism::Fixed(n) => usize::from(n.max(1)),
        }
    }

    /// Whether this is one sequential read.
    pub(crate) fn is_sequential(self) -> bool {
        self == Parallelism::Fixed(1)
    }
}

impl fmt::Display for Parallelism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parallelism::Auto => f.write_str("auto"),
            Parallelism::Fixed(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Parallelism {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Parallelism::Auto => serializer.serialize_str("auto"),
            Parallelism::Fixed(n) => serializer.serialize_u16(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Parallelism {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
            Other(serde::de::IgnoredAny),
        }
        let invalid = || {
            serde::de::Error::custom(
                "parallelism must be \"auto\" or a whole number from 1 to 65535 (1 reads sequentially)",
            )
        };
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) if text == "auto" => Ok(Parallelism::Auto),
            Raw::Number(n) if n >= 1 => u16::try_from(n)
                .map(Parallelism::Fixed)
                .map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

/// A contiguous range of primary ids in SQL Server's order: the ids after `after` (none: from
/// the first) up to and including `upto` (none: to the last).
///
/// The partitions of one read never overlap and leave no gap, so every record is read by
/// exactly one of them. A serde type: it travels in checkpoints and [`ReadPlan`](crate::ReadPlan)s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upto: Option<String>,
}

impl Partition {
    /// The whole table.
    pub fn whole() -> Self {
        Self {
            after: None,
            upto: None,
        }
    }

    /// The exclusive lower bound, if any.
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// The inclusive upper bound, if any.
    pub fn upto(&self) -> Option<&str> {
        self.upto.as_deref()
    }

    /// The bounds as positions in SQL Server's order, or an error naming a bound that is not
    /// an id.
    pub(crate) fn bounds(&self) -> Result<Bounds> {
        let parse = |bound: &Option<String>| {
            bound
                .as_deref()
                .map(|text| {
                    SqlGuid::parse(text).ok_or_else(|| {
                        Error::config(format!(
                            "the partition bound `{text}` is not a uniqueidentifier; the checkpoint or read plan was edited or belongs to another version"
                        ))
                    })
                })
                .transpose()
        };
        let bounds = Bounds {
            after: parse(&self.after)?,
            upto: parse(&self.upto)?,
        };
        if let (Some(after), Some(upto)) = (bounds.after, bounds.upto) {
            if after > upto {
                return Err(Error::config(format!(
                    "the partition after `{}` up to `{}` is empty by construction; the checkpoint or read plan was edited",
                    after.to_text(),
                    upto.to_text()
                )));
            }
        }
        Ok(bounds)
    }
}

/// A partition's bounds as positions in SQL Server's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub after: Option<SqlGuid>,
    pub upto: Option<SqlGuid>,
}

impl Bounds {
    /// Every id.
    pub const WHOLE: Bounds = Bounds {
        after: None,
        upto: None,
    };

    /// The serde form.
    pub fn partition(self) -> Partition {
        Partition {
            after: self.after.map(SqlGuid::to_text),
            upto: self.upto.map(SqlGuid::to_text),
        }
    }

    /// Whether `id` lies in the range.
    pub fn contains(self, id: SqlGuid) -> bool {
        self.after.is_none_or(|after| id > after) && self.upto.is_none_or(|upto| id <= upto)
    }

    /// The OData filter selecting the range of `primary`, if the range is bounded.
    pub fn filter(self, primary: &str) -> Option<String> {
        let after = self.after.map(|a| format!("{primary} gt {}", a.to_text()));
        let upto = self.upto.map(|u| format!("{primary} le {}", u.to_text()));
        match (after, upto) {
            (Some(a), Some(u)) => Some(format!("{a} and {u}")),
            (a, u) => a.or(u),
        }
    }

    /// Splits the range at `at` (which must lie inside it): the ids up to `at`, and after it.
    pub fn split_at(self, at: SqlGuid) -> (Bounds, Bounds) {
        (
            Bounds {
                after: self.after,
                upto: Some(at),
            },
            Bounds {
                after: Some(at),
                upto: self.upto,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SqlGuid {
        SqlGuid::parse(text).unwrap()
    }

    #[test]
    fn parallelism_reads_auto_or_a_positive_number() {
        let read = |json: &str| serde_json::from_str::<Parallelism>(json);
        assert_eq!(read("\"auto\"").unwrap(), Parallelism::Auto);
        assert_eq!(read("4").unwrap(), Parallelism::Fixed(4));
        for bad in ["0", "-1", "\"four\"", "1.5", "70000"] {
            let error = read(bad).unwrap_err().to_string();
            assert!(
                error.contains("\"auto\" or a whole number"),
                "{bad}: {error}"
            );
        }
        assert_eq!(serde_json::to_string(&Parallelism::Fixed(3)).unwrap(), "3");
        assert_eq!(Parallelism::Auto.slots(4), 4);
        assert_eq!(Parallelism::Auto.slots(52), MAX_AUTO_PARALLELISM);
    }

    /// Every id is in exactly one of `partitions`, judged by the filters' own comparisons.
    fn assert_exact_cover(partitions: &[Bounds], ids: &[SqlGuid]) {
        for id in ids {
            let holders = partitions.iter().filter(|p| p.contains(*id)).count();
            assert_eq!(holders, 1, "{} is in {holders} partitions", id.to_text());
        }
        for pair in partitions.windows(2) {
            assert_eq!(
                pair[0].upto, pair[1].after,
                "adjacent partitions share their bound"
            );
        }
        assert_eq!(partitions.first().unwrap().after, None);
        assert_eq!(partitions.last().unwrap().upto, None);
    }

    /// The ids just below, at and just above `at` in SQL Server's order.
    fn around(at: SqlGuid) -> [SqlGuid; 3] {
        [SqlGuid(at.0 - 1), at, SqlGuid(at.0 + 1)]
    }

    #[test]
    fn partitions_cover_the_id_space_with_no_gap_and_no_overlap_in_every_byte_group() {
        // Split points in every byte group.
        let points = [
            "12000000-0000-0000-0000-000000000000",
            "00000034-0000-0000-0000-000000000000",
            "00000000-5600-0000-0000-000000000000",
            "00000000-0078-0000-0000-000000000000",
            "00000000-0000-9a00-0000-000000000000",
            "00000000-0000-00bc-0000-000000000000",
            "00000000-0000-0000-de00-000000000000",
            "00000000-0000-0000-00f1-000000000000",
            "00000000-0000-0000-0000-230000000000",
            "00000000-0000-0000-0000-000000000045",
            "1800bd86-ad1f-ef11-840b-000d3abf969a",
            "084e1831-f995-f011-b41b-7c1e52127beb",
        ];
        let mut partitions = vec![Bounds::WHOLE];
        let mut ids = vec![SqlGuid(0), SqlGuid(u128::MAX)];
        for point in points {
            // The split goes through the text form, as checkpoints and filters carry it.
            let at = key(&key(point).to_text());
            let index = partitions.iter().position(|p| p.contains(at)).unwrap();
            let (lower, upper) = partitions[index].split_at(at);
            partitions[index] = lower;
            partitions.insert(index + 1, upper);
            ids.extend(around(at));
            ids.push(key(&point.replace('0', "1")));
        }
        assert_eq!(partitions.len(), points.len() + 1);
        assert_exact_cover(&partitions, &ids);
        for pair in partitions.windows(2).skip(1) {
            assert!(pair[0].after < pair[1].after, "ordered");
        }
    }

    #[test]
    fn filters_name_the_bounds() {
        let a = key("1800bd86-ad1f-ef11-840b-000d3abf969a");
        let (left, right) = Bounds {
            after: None,
            upto: None,
        }
        .split_at(a);
        assert_eq!(
            left.filter("accountid").unwrap(),
            "accountid le 1800bd86-ad1f-ef11-840b-000d3abf969a"
        );
        assert_eq!(
            right.filter("accountid").unwrap(),
            "accountid gt 1800bd86-ad1f-ef11-840b-000d3abf969a"
        );
        assert_eq!(
            Bounds {
                after: None,
                upto: None
            }
            .filter("accountid"),
            None
        );
        let edited = Partition {
            after: Some("not-an-id".into()),
            upto: None,
        };
        assert!(
            edited
                .bounds()
                .unwrap_err()
                .to_string()
                .contains("not-an-id")
        );
    }
}
