//! Analytics (PRODUCT.md, "Conversation manager"): conversations started, turns and
//! feedback per UTC day, for one customer or the whole app. The figures are
//! counted as turns and feedback happen (`ConversationStore::add_counts`), after
//! the store acknowledged them, so reading them costs about the number of days
//! asked for, never the number of conversations.
//!
//! What is counted: a stored turn on the day it was asked (a turn 0 also starts a
//! conversation); a rating on the day its answer was given, so a change of mind
//! (up to down, or taken back) moves that day's figures, never another's. Only the
//! change a feedback write made is counted: setting the rating an answer already
//! has counts nothing. Deleting or expiring a conversation does not un-count it.
//! A counting failure is logged and changes nothing else: the turn or feedback
//! stays acknowledged, and the figures fall short by it.

use chrono::NaiveDate;

use crate::domain::{DayRange, NewTurn, Rating, SessionId};
use crate::storage::{DayCounts, GuardedStore, Rated, Scope, StorageBudget, StorageError};

/// The figures of one scope over a range of days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    pub totals: DayCounts,
    /// The days that have any figures, in date order.
    pub days: Vec<(NaiveDate, DayCounts)>,
}

impl Figures {
    /// Thumbs up among all ratings; `None` without ratings.
    pub fn satisfaction(&self) -> Option<f64> {
        let rated = self.totals.up + self.totals.down;
        (rated > 0).then(|| self.totals.up as f64 / rated as f64)
    }
}

/// Reads the figures from the store the sessions API manages.
pub struct Analytics {
    store: GuardedStore,
}

impl Analytics {
    pub fn new(store: GuardedStore) -> Self {
        Self { store }
    }

    pub async fn figures(&self, scope: &Scope, days: &DayRange) -> Result<Figures, StorageError> {
        let days = self
            .store
            .day_counts(self.store.budget(), scope, days)
            .await?;
        let totals = days
            .iter()
            .fold(DayCounts::default(), |sum, (_, counts)| sum.plus(*counts));
        Ok(Figures { totals, days })
    }
}

/// Logs the structured event of a stored turn (never its content) and counts it
/// for its owner and the app. Never fails: a failure is logged.
pub async fn count_turn(
    store: &GuardedStore,
    budget: StorageBudget,
    session: &SessionId,
    number: u64,
    turn: &NewTurn,
) {
    tracing::info!(
        event = "turn",
        session = session.as_str(),
        turn = number,
        "turn stored"
    );
    let change = DayCounts {
        conversations: i64::from(number == 0),
        turns: 1,
        ..DayCounts::default()
    };
    let mut app = change;
    if let (0, Some(owner)) = (number, &turn.owner) {
        match store.first_seen(budget, owner).await {
            Ok(first) => app.customers = i64::from(first),
            Err(error) => not_counted(&error),
        }
    }
    add(
        store,
        budget,
        turn.owner.clone().map(Scope::Customer),
        turn.timestamp.date_naive(),
        change,
        app,
    )
    .await;
}

/// Logs the structured event of a feedback write and counts the change it made.
pub async fn count_feedback(
    store: &GuardedStore,
    budget: StorageBudget,
    session: &SessionId,
    turn: u64,
    rated: &Rated,
    rating: Option<Rating>,
) {
    tracing::info!(
        event = "feedback",
        session = session.as_str(),
        turn,
        rating = rating.map_or("none", Rating::as_str),
        "feedback stored"
    );
    let is = |rating: Option<Rating>, which: Rating| i64::from(rating == Some(which));
    let change = DayCounts {
        up: is(rating, Rating::Up) - is(rated.previous, Rating::Up),
        down: is(rating, Rating::Down) - is(rated.previous, Rating::Down),
        ..DayCounts::default()
    };
    add(
        store,
        budget,
        rated.owner.clone().map(Scope::Customer),
        rated.asked_at.date_naive(),
        change,
        change,
    )
    .await;
}

/// Adds `change` to `customer`'s figures and `app` to the app's, at the same
/// time; a change of nothing writes nothing.
async fn add(
    store: &GuardedStore,
    budget: StorageBudget,
    customer: Option<Scope>,
    day: NaiveDate,
    change: DayCounts,
    app: DayCounts,
) {
    let add_to = |scope: Option<Scope>, change: DayCounts| async move {
        match scope {
            Some(scope) if !change.is_zero() => store.add_counts(budget, &scope, day, change).await,
            _ => Ok(()),
        }
    };
    let (customer, app) = tokio::join!(add_to(customer, change), add_to(Some(Scope::App), app));
    for result in [customer, app] {
        if let Err(error) = result {
            not_counted(&error);
        }
    }
}

fn not_counted(error: &StorageError) {
    tracing::warn!(%error, "figures not counted");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfaction_is_up_among_all_ratings() {
        let figures = |up, down| Figures {
            totals: DayCounts {
                up,
                down,
                ..DayCounts::default()
            },
            days: Vec::new(),
        };
        assert_eq!(figures(0, 0).satisfaction(), None);
        assert_eq!(figures(4, 1).satisfaction(), Some(0.8));
        assert_eq!(figures(0, 3).satisfaction(), Some(0.0));
    }
}
