//! SQL Server's `uniqueidentifier` order, which Dataverse uses for `gt`/`lt`/`$orderby` on ids.

use std::fmt;

/// The bytes of a GUID rearranged so that comparing them left to right is SQL Server's order.
///
/// With `b` = .NET `Guid.ToByteArray()` (first three groups little-endian), SQL Server compares
/// bytes 10..=15, then 8, 9, then 6, 7, then 4, 5, then 0..=3. In text terms: the last group,
/// then the fourth, then the third, second and first groups with their byte pairs read right
/// to left.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SqlGuid([u8; 16]);

/// Where each byte of the key comes from, as an index into the GUID's bytes in text order.
const TEXT_INDEX: [usize; 16] = [10, 11, 12, 13, 14, 15, 8, 9, 7, 6, 5, 4, 3, 2, 1, 0];

impl SqlGuid {
    /// Parses `8-4-4-4-12` hex text (either case); `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.as_bytes();
        if text.len() != 36 || [8, 13, 18, 23].iter().any(|&i| text[i] != b'-') {
            return None;
        }
        let mut bytes = [0u8; 16];
        let mut digits = text.iter().filter(|&&c| c != b'-');
        for byte in &mut bytes {
            let high = hex(*digits.next()?)?;
            let low = hex(*digits.next()?)?;
            *byte = high << 4 | low;
        }
        let mut key = [0u8; 16];
        for (slot, &from) in key.iter_mut().zip(TEXT_INDEX.iter()) {
            *slot = bytes[from];
        }
        Some(SqlGuid(key))
    }
}

impl fmt::Debug for SqlGuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlGuid(")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, ")")
    }
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SqlGuid {
        SqlGuid::parse(text).unwrap()
    }

    /// `lower` sorts before `higher` in SQL Server although the text order says otherwise.
    fn assert_sql_before(lower: &str, higher: &str) {
        assert!(key(lower) < key(higher), "{lower} < {higher}");
        assert!(lower > higher, "the pair must disagree with text order");
    }

    #[test]
    fn the_last_group_counts_most() {
        assert_sql_before(
            "ffffffff-ffff-ffff-ffff-000000000001",
            "00000000-0000-0000-0000-000000000002",
        );
        // Within the last group, left to right.
        assert!(
            key("00000000-0000-0000-0000-010000000000")
                > key("00000000-0000-0000-0000-00ffffffffff")
        );
    }

    #[test]
    fn then_the_fourth_group_left_to_right() {
        assert_sql_before(
            "ffffffff-ffff-ffff-00ff-000d3abf969a",
            "00000000-0000-0000-0100-000d3abf969a",
        );
    }

    #[test]
    fn then_the_third_group_right_pair_first() {
        assert_sql_before(
            "ffffffff-ffff-ff00-840b-000d3abf969a",
            "00000000-0000-0001-840b-000d3abf969a",
        );
    }

    #[test]
    fn then_the_second_group_right_pair_first() {
        assert_sql_before(
            "ffffffff-ff00-ef11-840b-000d3abf969a",
            "00000000-0001-ef11-840b-000d3abf969a",
        );
    }

    #[test]
    fn the_first_group_last_with_its_right_pair_first() {
        assert_sql_before(
            "ffffff00-ad1f-ef11-840b-000d3abf969a",
            "00000001-ad1f-ef11-840b-000d3abf969a",
        );
        assert_sql_before(
            "1900bd86-ad1f-ef11-840b-000d3abf969a",
            "1800bd87-ad1f-ef11-840b-000d3abf969a",
        );
        // The left pair counts least.
        assert!(
            key("1900bd86-ad1f-ef11-840b-000d3abf969a")
                > key("1800bd86-ad1f-ef11-840b-000d3abf969a")
        );
    }

    #[test]
    fn case_is_ignored_and_malformed_text_refused() {
        assert_eq!(
            key("1800BD86-AD1F-EF11-840B-000D3ABF969A"),
            key("1800bd86-ad1f-ef11-840b-000d3abf969a")
        );
        assert_eq!(SqlGuid::parse("1800bd86ad1fef11840b000d3abf969a"), None);
        assert_eq!(SqlGuid::parse("1800bd86-ad1f-ef11-840b-000d3abf969g"), None);
        assert_eq!(SqlGuid::parse("1800bd86-ad1f-ef11-840b+000d3abf969a"), None);
        assert_eq!(SqlGuid::parse("é800bd86-ad1f-ef11-840b-000d3abf969"), None);
    }
}
