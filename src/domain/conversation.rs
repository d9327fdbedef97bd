//! Rules about whole conversations: who may see one, how long it lives, what it is
//! called in a listing, and how its times are written.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{CustomerId, Turn};

/// How long a title may be, in characters, before it is shortened.
const TITLE_CHARS: usize = 80;

/// How long conversations are kept after their last turn (`SESSION_TTL_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// `None`: kept forever.
    ttl: Option<chrono::TimeDelta>,
}

impl Retention {
    pub fn forever() -> Self {
        Self { ttl: None }
    }

    /// Keeps a conversation for `ttl` after its last turn. A `ttl` too long to
    /// represent (centuries) means forever.
    pub fn after(ttl: std::time::Duration) -> Self {
        Self {
            ttl: chrono::TimeDelta::from_std(ttl).ok(),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.ttl.is_some()
    }

    /// Conversations whose last turn is older than this have expired; `None` when
    /// conversations are kept forever.
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.ttl.and_then(|ttl| now.checked_sub_signed(ttl))
    }

    /// Whether a conversation whose last turn was at `last_turn` has expired by `now`.
    pub fn is_expired(&self, last_turn: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.cutoff(now).is_some_and(|cutoff| last_turn < cutoff)
    }
}

/// The owner of a conversation, given its turns from turn 0 on: turn 0's
/// customer, for the conversation's whole life. `None` for conversations written
/// by the seed or without a `customer_id`, and when turn 0 is not among `turns`.
pub fn owner_of(turns: &[Turn]) -> Option<&CustomerId> {
    turns
        .first()
        .filter(|turn| turn.index == 0)
        .and_then(|turn| turn.owner.as_ref())
}

/// Whether `requester` may read, export, delete or continue a conversation owned by
/// `owner`. A conversation without an owner is open to whoever knows its id.
pub fn may_access(owner: Option<&CustomerId>, requester: Option<&CustomerId>) -> bool {
    owner.is_none() || owner == requester
}

/// A conversation's title in listings: its first question on one line, shortened
/// to [`TITLE_CHARS`] characters with an ellipsis.
pub fn title_of(first_question: &str) -> String {
    one_line_within(first_question, TITLE_CHARS)
}

/// `text` on one line (runs of white space become one space), cut to at most
/// `max_chars` characters, the last of them an ellipsis when anything was cut.
pub fn one_line_within(text: &str, max_chars: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max_chars {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// How the contract writes times, stored and served: RFC 3339 in UTC, to the second
/// (`2025-01-24T10:30:00Z`).
pub fn timestamp_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_737_714_600 + seconds, 0).unwrap()
    }

    #[test]
    fn conversations_expire_after_the_ttl_since_their_last_turn() {
        let retention = Retention::after(Duration::from_secs(60));
        assert!(!retention.is_expired(at(0), at(60)));
        assert!(retention.is_expired(at(0), at(61)));
        assert_eq!(retention.cutoff(at(100)), Some(at(40)));
    }

    #[test]
    fn kept_forever_nothing_expires() {
        let retention = Retention::forever();
        assert!(!retention.is_limited());
        assert!(!retention.is_expired(at(-1_000_000_000), at(0)));
        assert_eq!(retention.cutoff(at(0)), None);
    }

    #[test]
    fn the_owner_is_turn_zeros_customer_whoever_asked_later() {
        let alice = CustomerId::parse("alice").unwrap();
        let bob = CustomerId::parse("bob").unwrap();
        let turn = |index, owner: &CustomerId| Turn {
            index,
            owner: Some(owner.clone()),
            ..Turn::exchange("q", "a")
        };
        assert_eq!(owner_of(&[turn(0, &alice), turn(1, &bob)]), Some(&alice));
        assert_eq!(owner_of(&[turn(1, &bob)]), None, "turn 0 not given");
        assert_eq!(owner_of(&[]), None);
    }

    #[test]
    fn only_the_owner_may_access_an_owned_conversation() {
        let alice = CustomerId::parse("alice").unwrap();
        let bob = CustomerId::parse("bob").unwrap();
        assert!(may_access(Some(&alice), Some(&alice)));
        assert!(!may_access(Some(&alice), Some(&bob)));
        assert!(!may_access(Some(&alice), None));
        assert!(may_access(None, Some(&bob)));
        assert!(may_access(None, None));
    }

    #[test]
    fn titles_are_one_line_and_at_most_eighty_characters() {
        assert_eq!(
            title_of("  What does\nLONPF2   do? "),
            "What does LONPF2 do?"
        );
        let exact = "é".repeat(80);
        assert_eq!(title_of(&exact), exact);
        let long = format!("{} tail", "word ".repeat(30));
        let title = title_of(&long);
        assert_eq!(title.chars().count(), 80);
        assert!(title.ends_with("word…"), "{title}");
    }

    #[test]
    fn times_are_written_to_the_second_in_utc() {
        let time = at(0) + chrono::TimeDelta::milliseconds(750);
        assert_eq!(timestamp_text(time), "2025-01-24T10:30:00Z");
    }
}
