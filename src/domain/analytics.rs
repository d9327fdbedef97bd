//! The days analytics covers: `from` and `to` of `GET /api/analytics`.

use chrono::NaiveDate;

use super::{InvalidInput, InvalidQuery};

/// UTC days from `from` to `to`, both included; an absent end is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DayRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl DayRange {
    /// `from` and `to` as given (`YYYY-MM-DD`, each optional); `from` after `to` is
    /// refused.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, InvalidQuery> {
        let range = Self {
            from: from.map(|raw| day("from", raw)).transpose()?,
            to: to.map(|raw| day("to", raw)).transpose()?,
        };
        match (range.from, range.to) {
            (Some(from), Some(to)) if from > to => Err(invalid(format!(
                "from ({from}) must not be after to ({to})"
            ))),
            _ => Ok(range),
        }
    }

    pub fn contains(&self, day: NaiveDate) -> bool {
        self.from.is_none_or(|from| from <= day) && self.to.is_none_or(|to| day <= to)
    }
}

fn invalid(message: String) -> InvalidQuery {
    InvalidQuery {
        kind: InvalidInput::Date,
        message,
    }
}

/// Exactly `YYYY-MM-DD`, a day that exists.
fn day(name: &str, raw: &str) -> Result<NaiveDate, InvalidQuery> {
    let shaped = raw.len() == 10
        && raw.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    shaped
        .then(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| invalid(format!("{name} must be a day as YYYY-MM-DD (got {raw:?})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn days_are_yyyy_mm_dd_and_in_order() {
        assert_eq!(DayRange::parse(None, None), Ok(DayRange::default()));
        let range = DayRange::parse(Some("2026-02-28"), Some("2026-03-01")).unwrap();
        assert_eq!(
            (range.from, range.to),
            (Some(date(2026, 2, 28)), Some(date(2026, 3, 1)))
        );
        assert!(range.contains(date(2026, 2, 28)) && range.contains(date(2026, 3, 1)));
        assert!(!range.contains(date(2026, 2, 27)) && !range.contains(date(2026, 3, 2)));
        assert!(DayRange::parse(Some("2026-03-01"), Some("2026-03-01")).is_ok());
        for (from, to) in [
            (Some("2026-02-30"), None),
            (Some("2026-2-28"), None),
            (None, Some("20260228")),
            (None, Some("+2026-02-28")),
            (None, Some("2026-02-28T00:00:00Z")),
            (Some(""), None),
            (Some("2026-03-02"), Some("2026-03-01")),
        ] {
            let error = DayRange::parse(from, to).unwrap_err();
            assert_eq!(error.kind, InvalidInput::Date, "{from:?} {to:?}");
        }
    }
}
