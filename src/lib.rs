//! Hotline: the telephony and call-centre backend of a bank's customer hotline.
//!
//! The SIP side ([`sip`]) answers calls and registers operators; [`media`] carries their
//! audio (RTP, prompts, recording, bridging); [`callflow`] decides what a call hears;
//! [`app`] starts everything;
//! [`records`] is the domain (types and rules), [`store`] its SQL, and [`desk`] the one
//! façade every write goes through, which also composes the notices a record causes;
//! [`transcribe`] turns voicemail into text and suggests tickets; [`notify`] delivers
//! e-mail and webhooks from an outbox; [`live`] is the live view's data; [`api`] is the HTTP side; [`config`] reads
//! `sip-config/hotline.toml`.

pub mod api;
pub mod app;
pub mod calendar;
pub mod callflow;
pub mod cluster;
pub mod config;
pub mod console;
pub mod desk;
pub mod fuzz_targets;
pub mod health;
pub mod live;
pub mod media;
pub mod notify;
pub mod phone;
pub mod records;
pub mod sip;
pub mod store;
pub mod tls;
pub mod transcribe;
pub mod web;
