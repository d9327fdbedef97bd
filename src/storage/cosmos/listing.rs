//! A page of a customer's listing: one query in the customer's partition, ordered
//! by `updated_at` (the document's own text), read through the service's
//! continuation only as far as the page needs.
//!
//! Why the order is finished here: the texts sort like the times across seconds,
//! but within one second seed 000's naive times (`…:05.123456`, `…:05`) and ours
//! (`…:05Z`) sort by their characters, and ties need the session id, which a
//! second `ORDER BY` field would give only with a composite index that an existing
//! container need not have (Cosmos DB, and the stand-in, refuse the query without
//! one). So the query orders by `updated_at` alone and starts at the position's
//! second; here the rows of each second are put in listing order
//! ([`ListPosition::order`]) and those up to the position skipped. A page reads
//! its own rows plus the rest of the seconds it touches.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Deserialize;

use super::document::Conversation;
use crate::domain::{parse_timestamp, title_of, CustomerId, SessionId};
use crate::storage::{ListPosition, ListingPage, SessionSummary};

/// The page's query; `@before` and `@from` bound it to the position's second and
/// after, and to the cutoff's second and before, when those are given.
pub fn page_query(after: bool, cutoff: bool) -> String {
    let mut query = String::from(
        "SELECT c.id, c.title, c.messages[0].content AS first_question, \
         ARRAY_LENGTH(c.messages) AS message_count, c.created_at, c.updated_at \
         FROM c WHERE c.customer_id = @owner AND IS_STRING(c.updated_at)",
    );
    if after {
        query.push_str(" AND c.updated_at < @before");
    }
    if cutoff {
        query.push_str(" AND c.updated_at >= @from");
    }
    query.push_str(" ORDER BY c.updated_at DESC");
    query
}

/// The text every `updated_at` of `time`'s second starts with, whatever its format.
fn second_prefix(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// `@before`: just past every text of the position's second.
pub fn before(after: &ListPosition) -> String {
    second_prefix(second_of(after.updated_at) + TimeDelta::seconds(1))
}

/// `@from`: the first text of the cutoff's second.
pub fn from(cutoff: DateTime<Utc>) -> String {
    second_prefix(cutoff)
}

fn second_of(time: DateTime<Utc>) -> DateTime<Utc> {
    time.duration_trunc(TimeDelta::seconds(1)).unwrap_or(time)
}

/// A listing row, projected by the query (no messages but the first question).
#[derive(Deserialize)]
pub struct ListedRow {
    id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    first_question: Option<String>,
    #[serde(default)]
    message_count: Option<u64>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

impl ListedRow {
    /// `None` for a document that is no conversation we can list.
    fn summary(self, owner: &CustomerId) -> Option<SessionSummary> {
        let updated_at = self.updated_at.as_deref().and_then(parse_timestamp)?;
        Some(SessionSummary {
            session_id: SessionId::parse(&self.id).ok()?,
            owner: owner.clone(),
            // The name its owner gave, else the first question, shortened.
            title: self
                .title
                .or_else(|| self.first_question.map(|text| title_of(&text)))
                .unwrap_or_default(),
            turns: self.message_count.unwrap_or_default().div_ceil(2),
            created_at: self
                .created_at
                .as_deref()
                .and_then(parse_timestamp)
                .unwrap_or(updated_at),
            updated_at,
        })
    }
}

/// The listing entry of `document`, as `owner`'s; `None` for a document that is
/// no conversation we can list.
pub fn summary_of(document: &Conversation, owner: &CustomerId) -> Option<SessionSummary> {
    ListedRow {
        id: document.id.clone(),
        title: document.title().map(str::to_owned),
        first_question: document.messages.first().map(|m| m.content.clone()),
        message_count: Some(document.messages.len() as u64),
        created_at: Some(document.created_at.clone()),
        updated_at: Some(document.updated_at.clone()),
    }
    .summary(owner)
}

/// Collects a page from the query's rows as they come (latest second first).
pub struct PageBuilder<'a> {
    owner: &'a CustomerId,
    limit: usize,
    after: Option<&'a ListPosition>,
    cutoff: Option<DateTime<Utc>>,
    kept: Vec<SessionSummary>,
}

impl<'a> PageBuilder<'a> {
    pub fn new(
        owner: &'a CustomerId,
        limit: usize,
        after: Option<&'a ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            owner,
            limit,
            after,
            cutoff,
            kept: Vec::new(),
        }
    }

    /// Takes the next row; `false` once no later row can belong to the page: it
    /// holds one more than `limit` and the row's second is past theirs.
    pub fn take(&mut self, row: ListedRow) -> bool {
        let Some(summary) = row.summary(self.owner) else {
            return true;
        };
        let second = second_of(summary.updated_at);
        if self.kept.len() > self.limit
            && self
                .kept
                .last()
                .is_some_and(|last| second < second_of(last.updated_at))
        {
            return false;
        }
        let after_position = self
            .after
            .is_none_or(|after| ListPosition::of(&summary).order() > after.order());
        let in_time = self.cutoff.is_none_or(|c| summary.updated_at >= c);
        if after_position && in_time {
            self.kept.push(summary);
        }
        true
    }

    pub fn finish(mut self) -> ListingPage {
        self.kept.sort_by(|a, b| {
            ListPosition::of(a)
                .order()
                .cmp(&ListPosition::of(b).order())
        });
        self.kept.truncate(self.limit + 1);
        ListingPage::from_candidates(self.kept, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn row(id: &str, updated_at: &str) -> ListedRow {
        serde_json::from_value(json!({
            "id": id, "first_question": "q", "message_count": 2,
            "created_at": "2025-01-24T10:00:00Z", "updated_at": updated_at,
        }))
        .unwrap()
    }

    /// The rows as the query returns them: by text, latest first.
    fn rows() -> Vec<ListedRow> {
        let mut rows = vec![
            ("e", "2025-01-24T10:30:09Z"),
            ("d", "2025-01-24T10:30:05Z"),
            ("b", "2025-01-24T10:30:05Z"),
            ("seed-late", "2025-01-24T10:30:05.500000"),
            ("seed-whole", "2025-01-24T10:30:05"),
            ("a", "2025-01-24T10:30:01Z"),
            ("f", "2025-01-24T10:30:00Z"),
        ];
        rows.sort_by(|x, y| y.1.cmp(x.1));
        rows.into_iter().map(|(id, at)| row(id, at)).collect()
    }

    fn page(
        limit: usize,
        after: Option<&ListPosition>,
        cutoff: Option<DateTime<Utc>>,
    ) -> (ListingPage, usize) {
        let owner = CustomerId::parse("alice").unwrap();
        let mut builder = PageBuilder::new(&owner, limit, after, cutoff);
        let mut read = 0;
        for row in rows() {
            read += 1;
            if !builder.take(row) {
                break;
            }
        }
        (builder.finish(), read)
    }

    fn ids(page: &ListingPage) -> Vec<&str> {
        page.sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .collect()
    }

    #[test]
    fn seconds_in_mixed_formats_are_put_in_listing_order_and_pages_continue_exactly() {
        let expected = ["e", "seed-late", "b", "d", "seed-whole", "a", "f"];
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let (page, _) = page(2, after.as_ref(), None);
            listed.extend(ids(&page).into_iter().map(String::from));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(listed, expected);
    }

    #[test]
    fn a_page_reads_its_rows_and_the_rest_of_their_second_only() {
        let (first, read) = page(1, None, None);
        assert_eq!(ids(&first), ["e"]);
        // e, then all four of 10:30:05 (the second of the one more), then a: stop.
        assert_eq!(read, 6);
    }

    #[test]
    fn the_cutoff_leaves_out_what_is_older_within_its_second() {
        let cutoff =
            Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 5).unwrap() + TimeDelta::milliseconds(100);
        let (page, _) = page(10, None, Some(cutoff));
        assert_eq!(ids(&page), ["e", "seed-late"]);
        assert_eq!(from(cutoff), "2025-01-24T10:30:05");
    }

    #[test]
    fn the_query_starts_at_the_positions_second() {
        let after = ListPosition {
            updated_at: Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 59).unwrap()
                + TimeDelta::milliseconds(500),
            session_id: SessionId::parse("x").unwrap(),
        };
        assert_eq!(before(&after), "2025-01-24T10:31:00");
        // Every text of 10:30:59, in any format, sorts below that; 10:31:00's do not.
        for text in [
            "2025-01-24T10:30:59Z",
            "2025-01-24T10:30:59.999999",
            "2025-01-24T10:30:59+00:00",
        ] {
            assert!(text < before(&after).as_str(), "{text}");
        }
        assert!("2025-01-24T10:31:00" >= before(&after).as_str());
    }
}
