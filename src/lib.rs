//! Hotline: the telephony and call-centre backend of a bank's customer hotline.
//!
//! The SIP side ([`sip`]) answers calls and registers operators; [`app`] starts everything;
//! [`api`] is the HTTP side; [`config`] reads `sip-config/hotline.toml`.

pub mod api;
pub mod app;
pub mod config;
pub mod sip;
