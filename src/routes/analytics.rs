//! `GET /api/analytics` (one customer's figures, the customer decided as for the
//! sessions API) and `GET /api/analytics/app` (the whole app's, its own function
//! behind the host's admin key), both narrowed by `from` and `to`.

use serde_json::{json, Value};
use warp::reply::Response;
use warp::Reply;

use super::sessions::Parameters;
use super::{ApiError, AppState, Request};
use crate::analytics::Figures;
use crate::domain::DayRange;
use crate::storage::{DayCounts, Scope};

pub async fn customer(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let parameters = Parameters::of(request);
    let owner = parameters.owner(state, request)?;
    let days = DayRange::parse(parameters.get("from"), parameters.get("to"))?;
    let figures = state
        .analytics
        .figures(&Scope::Customer(owner), &days)
        .await?;
    Ok(warp::reply::json(&figures_json(&figures, false)).into_response())
}

pub async fn app(state: &AppState, request: &Request) -> Result<Response, ApiError> {
    let parameters = Parameters::of(request);
    let days = DayRange::parse(parameters.get("from"), parameters.get("to"))?;
    let figures = state.analytics.figures(&Scope::App, &days).await?;
    Ok(warp::reply::json(&figures_json(&figures, true)).into_response())
}

/// The contract's body; `customers` (new customers) only app-wide.
fn figures_json(figures: &Figures, app: bool) -> Value {
    let day = |date: String, counts: &DayCounts| {
        let mut day = json!({
            "date": date,
            "conversations": counts.conversations,
            "turns": counts.turns,
            "up": counts.up,
            "down": counts.down,
        });
        if app {
            day["customers"] = counts.customers.into();
        }
        day
    };
    let totals = &figures.totals;
    let mut body = json!({
        "conversations": totals.conversations,
        "turns": totals.turns,
        "feedback": {"up": totals.up, "down": totals.down},
        "satisfaction": figures.satisfaction(),
        "days": figures
            .days
            .iter()
            .map(|(date, counts)| day(date.to_string(), counts))
            .collect::<Vec<_>>(),
    });
    if app {
        body["customers"] = totals.customers.into();
    }
    body
}
