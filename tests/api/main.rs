//! One test binary for everything that talks to the service from outside.

mod analytics;
mod azurite;
mod chat;
mod cosmos;
mod cosmos_documents;
mod crowd;
mod fake_upstream;
mod helpers;
mod host_emulation;
mod hostile_input;
mod identity;
mod load_and_faults;
mod model;
mod persistence;
mod query;
mod races;
mod round_trips;
mod sessions;
mod startup;
mod storage_conformance;
mod storage_faults;
mod streaming;
