//! A page's outline: how many rows it holds, its first and last primary id, and whether a next
//! link follows, read in one light pass that keeps nothing else. A partitioned read asks for a
//! range's next page from the outline, while the page itself is still being decoded.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The outline of a collection page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outline {
    /// The rows in `value`.
    pub rows: usize,
    /// The first row's primary id.
    pub first: Option<String>,
    /// The last row's primary id.
    pub last: Option<String>,
    /// Whether the page has an `@odata.nextLink`.
    pub more: bool,
}

impl Outline {
    /// The outline of `body`, a page whose rows carry their id in the property `primary`. A
    /// row without it is an error naming its position, as in a full decode.
    pub fn read(body: &[u8], primary: &str) -> Result<Outline, String> {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let outline = PageSeed { primary }
            .deserialize(&mut deserializer)
            .and_then(|outline| deserializer.end().map(|()| outline))
            .map_err(|e| e.to_string())?;
        Ok(outline)
    }
}

/// The page object: `value` and `@odata.nextLink` read, the rest skipped.
struct PageSeed<'p> {
    primary: &'p str,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_> {
    type Value = Outline;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Outline, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_> {
    type Value = Outline;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Web API page object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outline, A::Error> {
        let mut outline = Outline::default();
        while let Some(key) = map.next_key::<PageKey>()? {
            match key {
                PageKey::Value => map.next_value_seed(RowsSeed {
                    primary: self.primary,
                    outline: &mut outline,
                })?,
                PageKey::NextLink => {
                    outline.more = true;
                    map.next_value::<IgnoredAny>()?;
                }
                PageKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(outline)
    }
}

/// The page properties the outline reads.
enum PageKey {
    Value,
    NextLink,
    Other,
}

impl<'de> serde::Deserialize<'de> for PageKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = PageKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a property name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<PageKey, E> {
                Ok(match key {
                    "value" => PageKey::Value,
                    "@odata.nextLink" => PageKey::NextLink,
                    _ => PageKey::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The `value` array: each row's primary id, the first and the last kept.
struct RowsSeed<'p, 'o> {
    primary: &'p str,
    outline: &'o mut Outline,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut rows: A) -> Result<(), A::Error> {
        let primary = self.primary;
        while let Some(id) = rows.next_element_seed(RowIdSeed { primary })? {
            let position = self.outline.rows + 1;
            let id = id.ok_or_else(|| {
                de::Error::custom(format!("row {position} of the page has no `{primary}`"))
            })?;
            if self.outline.first.is_none() {
                self.outline.first = Some(id.clone());
            }
            self.outline.last = Some(id);
            self.outline.rows = position;
        }
        Ok(())
    }
}

/// One row: its primary id, the other properties skipped.
struct RowIdSeed<'p> {
    primary: &'p str,
}

impl<'de> DeserializeSeed<'de> for RowIdSeed<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowIdSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut row: A) -> Result<Self::Value, A::Error> {
        let mut id = None;
        while let Some(is_primary) = row.next_key_seed(IsKey(self.primary))? {
            if is_primary {
                id = row.next_value::<Option<String>>()?;
            } else {
                row.next_value::<IgnoredAny>()?;
            }
        }
        Ok(id)
    }
}

/// Whether a property name is the given one.
struct IsKey<'p>(&'p str);

impl<'de> DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"{
        "@odata.context": "https://org.crm.dynamics.com/api/data/v9.2/$metadata#accounts(name,accountid)",
        "value": [
            {"@odata.etag": "W/\"1\"", "name": "A \"quoted\" name", "accountid": "00000000-0000-0000-0000-000000000001"},
            {"name": null, "accountid": "00000000-0000-0000-0000-000000000002", "address": {"accountid": "not this one"}},
            {"accountid": "00000000-0000-0000-0000-000000000003", "name": "C"}
        ],
        "@odata.nextLink": "https://org.crm.dynamics.com/api/data/v9.2/accounts?$skiptoken=x"
    }"#;

    #[test]
    fn the_outline_names_the_rows_first_and_last_id_and_the_next_link() {
        let outline = Outline::read(PAGE.as_bytes(), "accountid").unwrap();
        assert_eq!(
            outline,
            Outline {
                rows: 3,
                first: Some("00000000-0000-0000-0000-000000000001".into()),
                last: Some("00000000-0000-0000-0000-000000000003".into()),
                more: true,
            }
        );
    }

    #[test]
    fn a_last_page_has_no_next_link_and_an_empty_page_no_ids() {
        let outline = Outline::read(br#"{"value": []}"#, "accountid").unwrap();
        assert_eq!(outline, Outline::default());
    }

    #[test]
    fn a_row_without_its_id_is_an_error_naming_its_position() {
        let page = r#"{"value": [{"accountid": "a"}, {"name": "no id"}]}"#;
        let error = Outline::read(page.as_bytes(), "accountid").unwrap_err();
        assert!(
            error.contains("row 2 of the page has no `accountid`"),
            "{error}"
        );
    }

    #[test]
    fn a_body_that_is_not_a_page_is_an_error() {
        assert!(Outline::read(b"<html>busy</html>", "accountid").is_err());
        assert!(Outline::read(br#"{"value": [1, 2]}"#, "accountid").is_err());
    }
}
