//! Domain types: parsed once at the edge, trusted everywhere after ("parse, don't validate").

mod identifiers;
mod query;
mod turn;

pub use identifiers::{CustomerId, SessionId};
pub use query::{InvalidInput, InvalidQuery, Metadata, QueryRequest, Question};
pub use turn::{NewTurn, Turn};
