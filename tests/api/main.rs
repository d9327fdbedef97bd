//! One test binary for everything that talks to the service from outside.

mod helpers;
mod query;
mod startup;
