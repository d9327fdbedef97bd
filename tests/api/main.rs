//! One test binary for everything that talks to the service from outside.

mod azurite;
mod helpers;
mod host_emulation;
mod persistence;
mod query;
mod startup;
mod storage_conformance;
mod storage_faults;
