//! Domain types: parsed once at the edge, trusted everywhere after ("parse, don't validate").

mod analytics;
mod conversation;
mod identifiers;
mod manager;
mod query;
mod search;
mod share;
mod turn;

pub use analytics::DayRange;
pub use conversation::{
    may_access, one_line_within, owner_of, parse_timestamp, timestamp_text, title_of, Retention,
};
pub use identifiers::{CustomerId, SessionId};
pub use manager::{Feedback, Rating, Title};
pub use query::{InvalidInput, InvalidQuery, Metadata, QueryRequest, Question};
pub use search::{Match, Role, SearchQuery};
pub use share::ShareId;
pub use turn::{NewTurn, Turn};
