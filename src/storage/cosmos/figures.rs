//! Daily figures in Cosmos DB: one item per scope and UTC day, `YYYY-MM-DD`, in
//! a partition of the scope's own (`#figures:customer:<id>` or `#figures:app`,
//! apart from every customer's conversations and from seed 000's listing).
//! Changes are added with the service's atomic `incr` patch, so concurrent
//! writers in any number of processes neither refuse nor lose each other's; the
//! first change of a day creates its item insert-only. A customer's first
//! conversation is one insert-only item, `first-seen`, in their partition.

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{is_conflict, is_not_found, storage_error};
use super::rest::{Query, Scope as QueryScope};
use super::CosmosStore;
use crate::domain::{CustomerId, DayRange};
use crate::storage::{DayCounts, Scope, StorageError};

const FIRST_SEEN: &str = "first-seen";
const DAY_FORMAT: &str = "%Y-%m-%d";

/// A day's item, as the query returns it (a field never added reads as 0).
#[derive(Deserialize)]
struct DayItem {
    day: String,
    #[serde(default)]
    conversations: i64,
    #[serde(default)]
    turns: i64,
    #[serde(default)]
    up: i64,
    #[serde(default)]
    down: i64,
    #[serde(default)]
    customers: i64,
}

fn partition(scope: &Scope) -> String {
    match scope {
        Scope::Customer(customer) => format!("#figures:customer:{}", customer.as_str()),
        Scope::App => "#figures:app".to_owned(),
    }
}

/// `change`'s fields by name, as stored.
fn fields(change: DayCounts) -> [(&'static str, i64); 5] {
    [
        ("conversations", change.conversations),
        ("turns", change.turns),
        ("up", change.up),
        ("down", change.down),
        ("customers", change.customers),
    ]
}

impl CosmosStore {
    pub(super) async fn add_to_day(
        &self,
        scope: &Scope,
        day: NaiveDate,
        change: DayCounts,
    ) -> Result<(), StorageError> {
        const OPERATION: &str = "counting";
        let container = self.container().await?;
        let partition = partition(scope);
        let id = day.format(DAY_FORMAT).to_string();
        let increments: Vec<Value> = fields(change)
            .into_iter()
            .filter(|(_, by)| *by != 0)
            .map(|(field, by)| json!({ "op": "incr", "path": format!("/{field}"), "value": by }))
            .collect();
        // The day's item exists from its first change on: add to it; else create
        // it, unless a racing writer just did (then add to theirs).
        match container.patch_item(&partition, &id, &increments).await {
            Err(e) if is_not_found(&e) => {}
            patched => return patched.map_err(|e| storage_error(OPERATION, &e)),
        }
        let mut item = json!({ "id": id, "customer_id": partition, "day": id });
        for (field, by) in fields(change) {
            item[field] = by.into();
        }
        match container.create_item(&partition, &item).await {
            Err(e) if is_conflict(&e) => container
                .patch_item(&partition, &id, &increments)
                .await
                .map_err(|e| storage_error(OPERATION, &e)),
            created => created.map(drop).map_err(|e| storage_error(OPERATION, &e)),
        }
    }

    pub(super) async fn days(
        &self,
        scope: &Scope,
        days: &DayRange,
    ) -> Result<Vec<(NaiveDate, DayCounts)>, StorageError> {
        let container = self.container().await?;
        let partition = partition(scope);
        let day = |date: Option<NaiveDate>, or: &str| {
            date.map_or(or.to_owned(), |d| d.format(DAY_FORMAT).to_string())
        };
        // The partition named in the query as well: the local stand-in does not
        // scope a query by its partition key header (the service does).
        let query = Query::new(
            "SELECT * FROM c WHERE c.customer_id = @partition AND IS_DEFINED(c.day) \
             AND c.day >= @from AND c.day <= @to",
        )
        .with("@partition", partition.as_str())
        .with("@from", day(days.from, "0000-00-00"))
        .with("@to", day(days.to, "9999-99-99"));
        let items: Vec<DayItem> = container
            .query_all(&query, QueryScope::Partition(&partition))
            .await
            .map_err(|e| storage_error("reading figures", &e))?;
        let mut figures: Vec<(NaiveDate, DayCounts)> = items
            .into_iter()
            .filter_map(|item| {
                let date = NaiveDate::parse_from_str(&item.day, DAY_FORMAT).ok()?;
                let counts = DayCounts {
                    conversations: item.conversations,
                    turns: item.turns,
                    up: item.up,
                    down: item.down,
                    customers: item.customers,
                };
                Some((date, counts))
            })
            .collect();
        figures.sort_by_key(|(date, _)| *date);
        Ok(figures)
    }

    pub(super) async fn note_first_seen(
        &self,
        customer: &CustomerId,
    ) -> Result<bool, StorageError> {
        let container = self.container().await?;
        let partition = partition(&Scope::Customer(customer.clone()));
        let item = json!({ "id": FIRST_SEEN, "customer_id": partition });
        match container.create_item(&partition, &item).await {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(storage_error("recording a first conversation", &e)),
        }
    }
}
