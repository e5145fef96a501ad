//! Uniqueidentifiers in SQL Server's order, the order Dataverse filters (`accountid gt <id>`)
//! and sorts (`$orderby=accountid`) primary ids in.
//!
//! SQL Server compares the 16 bytes of a GUID (as `Guid.ToByteArray()` lays them out, the
//! first three groups little-endian) in the order 10-15, 8-9, 6-7, 4-5, 0-3. Read as a number in
//! that order, ids can be compared, bisected and turned back into text.

/// Byte positions of `Guid.ToByteArray()`, most significant first.
const SIGNIFICANCE: [usize; 16] = [10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3];

/// A uniqueidentifier as its position in SQL Server's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SqlGuid(pub(super) u128);

impl SqlGuid {
    /// Parses `8-4-4-4-12` hexadecimal text (any case, optional braces).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim_start_matches('{').trim_end_matches('}');
        let groups: Vec<&str> = text.split('-').collect();
        let widths = [8, 4, 4, 4, 12];
        if groups.len() != 5 || groups.iter().zip(widths).any(|(g, w)| g.len() != w) {
            return None;
        }
        let mut bytes = [0u8; 16];
        let mut at = 0;
        for (index, group) in groups.iter().enumerate() {
            let mut chunk = hex_bytes(group)?;
            if index < 3 {
                chunk.reverse(); // Data1, Data2, Data3 are stored little-endian
            }
            bytes[at..at + chunk.len()].copy_from_slice(&chunk);
            at += chunk.len();
        }
        Some(SqlGuid(
            SIGNIFICANCE
                .iter()
                .fold(0u128, |key, &i| (key << 8) | u128::from(bytes[i])),
        ))
    }

    /// The id in lowercase `8-4-4-4-12` text.
    pub fn to_text(self) -> String {
        let mut bytes = [0u8; 16];
        for (rank, &i) in SIGNIFICANCE.iter().enumerate() {
            bytes[i] = (self.0 >> (8 * (15 - rank))) as u8;
        }
        let group = |range: std::ops::Range<usize>, little_endian: bool| {
            let mut chunk = bytes[range].to_vec();
            if little_endian {
                chunk.reverse();
            }
            chunk.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        format!(
            "{}-{}-{}-{}-{}",
            group(0..4, true),
            group(4..6, true),
            group(6..8, true),
            group(8..10, false),
            group(10..16, false)
        )
    }

    /// The id halfway between `self` and `other` (`self <= other`), rounded down.
    pub fn midpoint(self, other: SqlGuid) -> SqlGuid {
        SqlGuid(self.0 + (other.0 - self.0) / 2)
    }

    /// The id `ids` places after `self` (saturating at the largest id).
    pub fn advanced_by(self, ids: f64) -> SqlGuid {
        SqlGuid(self.0.saturating_add(ids.max(0.0) as u128))
    }

    /// How many ids lie after `self` up to `other`, as a float for weighing ranges.
    pub fn distance_to(self, other: SqlGuid) -> f64 {
        other.0.saturating_sub(self.0) as f64
    }
}

fn hex_bytes(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> SqlGuid {
        SqlGuid::parse(text).unwrap()
    }

    #[test]
    fn text_round_trips() {
        for text in [
            "1800bd86-ad1f-ef11-840b-000d3abf969a",
            "084e1831-f995-f011-b41b-7c1e52127beb",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
        ] {
            assert_eq!(key(text).to_text(), text);
        }
        assert_eq!(
            key("{1800BD86-AD1F-EF11-840B-000D3ABF969A}").to_text(),
            "1800bd86-ad1f-ef11-840b-000d3abf969a"
        );
        for bad in [
            "",
            "1800bd86",
            "1800bd86-ad1f-ef11-840b-000d3abf969",
            "x800bd86-ad1f-ef11-840b-000d3abf969a",
        ] {
            assert!(SqlGuid::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn groups_count_from_the_last_and_byte_pairs_right_to_left_in_the_first_three() {
        // Each id is larger than the one before it in SQL Server's order.
        let ascending = [
            "ff000000-0000-0000-0000-000000000000", // byte 3 (least significant)
            "00ff0000-0000-0000-0000-000000000000", // byte 2
            "0000ff00-0000-0000-0000-000000000000", // byte 1
            "000000ff-0000-0000-0000-000000000000", // byte 0
            "00000000-ff00-0000-0000-000000000000", // byte 5
            "00000000-00ff-0000-0000-000000000000", // byte 4
            "00000000-0000-ff00-0000-000000000000", // byte 7
            "00000000-0000-00ff-0000-000000000000", // byte 6
            "00000000-0000-0000-00ff-000000000000", // byte 9
            "00000000-0000-0000-ff00-000000000000", // byte 8
            "00000000-0000-0000-0000-0000000000ff", // byte 15
            "00000000-0000-0000-0000-ff0000000000", // byte 10 (most significant)
        ];
        for pair in ascending.windows(2) {
            assert!(key(pair[0]) < key(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn the_midpoint_lies_between() {
        let (a, b) = (
            key("1800bd86-ad1f-ef11-840b-000d3abf969a"),
            key("084e1831-f995-f011-b41b-7c1e52127beb"),
        );
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        let mid = low.midpoint(high);
        assert!(low < mid && mid < high);
        assert_eq!(SqlGuid::parse(&mid.to_text()), Some(mid));
    }
}
