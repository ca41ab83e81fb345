//! The notices a record causes, composed here, above the store, so that the SQL carries no
//! text and the notifier only delivers: their texts for people and JSON for machines
//! ([`voicemail`], [`tickets`]) and who gets each ([`Targets`]). The desk enqueues them in
//! the transaction of the record they announce.

pub mod alerts;
mod targets;
pub mod tickets;
pub mod voicemail;

pub use targets::{DepartmentTarget, Targets};
