//! RowKeys for turn numbers, and quoting of keys in filters and entity addresses.
//!
//! Turns below 10,000 get the seed's four zero-padded digits (`0000` … `9999`).
//! From 10,000 on, a key is `9999`, then the number's digit count, then the number
//! (`10000` → `9999510000`), so keys keep the turn order both as strings (what
//! Table Storage sorts by) and as integers (what a reader parsing them may sort by).

/// Turn numbers past this would need a two-digit digit count, which breaks the order.
pub const MAX_TURN: u64 = 999_999_999;

/// The longest RowKey [`row_key`] produces (for entity size checks).
pub const MAX_ROW_KEY_CHARS: usize = 14;

/// The character after `9`: `RowKey lt ':'` keeps range queries to turn rows, past
/// any non-numeric row a later feature may keep in the same partition.
pub const END_OF_TURN_KEYS: &str = ":";

const PADDED_DIGITS: usize = 4;
const FIRST_EXTENDED: u64 = 10_000;
const EXTENDED_PREFIX: &str = "9999";

/// The RowKey of turn `n` (`n` at most [`MAX_TURN`]).
pub fn row_key(n: u64) -> String {
    debug_assert!(n <= MAX_TURN);
    if n < FIRST_EXTENDED {
        format!("{n:04}")
    } else {
        let digits = n.to_string();
        format!("{EXTENDED_PREFIX}{}{digits}", digits.len())
    }
}

/// The turn number of a RowKey: ours in both forms, and the seed's plain integers.
pub fn turn_number(key: &str) -> Option<u64> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if key.len() > PADDED_DIGITS {
        if let Some(extended) = parse_extended(key) {
            return Some(extended);
        }
    }
    key.parse().ok()
}

fn parse_extended(key: &str) -> Option<u64> {
    let rest = key.strip_prefix(EXTENDED_PREFIX)?;
    let (count, digits) = rest.split_at_checked(1)?;
    let count: usize = count.parse().ok()?;
    let n: u64 = digits.parse().ok()?;
    (digits.len() == count && !digits.starts_with('0') && n >= FIRST_EXTENDED).then_some(n)
}

/// `value` as it must appear between single quotes in a filter or an entity address:
/// the service reads `''` as one quote, and the SDK passes both through unescaped.
pub fn quoted(value: &str) -> String {
    value.replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_numbers_use_the_seed_format() {
        assert_eq!(row_key(0), "0000");
        assert_eq!(row_key(42), "0042");
        assert_eq!(row_key(9999), "9999");
    }

    #[test]
    fn large_numbers_are_prefixed_with_their_digit_count() {
        assert_eq!(row_key(10_000), "9999510000");
        assert_eq!(row_key(123_456), "99996123456");
        assert_eq!(row_key(MAX_TURN), "99999999999999");
        assert_eq!(row_key(MAX_TURN).chars().count(), MAX_ROW_KEY_CHARS);
    }

    #[test]
    fn keys_sort_like_their_numbers_as_strings_and_as_integers() {
        let numbers = [
            0, 1, 9, 10, 999, 9_998, 9_999, 10_000, 10_001, 99_999, 100_000, 5_000_000, MAX_TURN,
        ];
        let keys: Vec<String> = numbers.iter().map(|&n| row_key(n)).collect();
        let mut as_strings = keys.clone();
        as_strings.sort();
        assert_eq!(as_strings, keys);
        let mut as_integers = keys.clone();
        as_integers.sort_by_key(|k| k.parse::<u64>().unwrap());
        assert_eq!(as_integers, keys);
    }

    #[test]
    fn keys_parse_back() {
        for n in [0, 7, 9_999, 10_000, 10_001, 654_321, MAX_TURN] {
            assert_eq!(turn_number(&row_key(n)), Some(n), "{n}");
        }
    }

    #[test]
    fn seed_keys_parse_as_plain_integers() {
        assert_eq!(turn_number("0003"), Some(3));
        assert_eq!(turn_number("12"), Some(12));
        assert_eq!(turn_number("10000"), Some(10_000));
        assert_eq!(turn_number("99990"), Some(99_990));
    }

    #[test]
    fn non_numeric_keys_are_not_turns() {
        for key in ["", "abc", "00a1", "-1", " 1", "summary"] {
            assert_eq!(turn_number(key), None, "{key:?}");
        }
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quoted("o'brien"), "o''brien");
        assert_eq!(quoted("''"), "''''");
        assert_eq!(quoted("plain"), "plain");
    }
}
