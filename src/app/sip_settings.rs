//! The SIP stack's settings, from the configuration.
//!
//! `sip/` reads no configuration: each part takes its own settings type, so it can be
//! built, tested and benchmarked without a `Config`, and a change to the file format stays
//! here. These conversions are the only place the two meet.

use crate::config::Config;
use crate::sip::registrar::RegistrarSettings;
use crate::sip::transaction::Timers;
use crate::sip::transport::TransportSettings;
use crate::sip::ua::UaSettings;
use std::time::Duration;

impl From<&Config> for TransportSettings {
    fn from(config: &Config) -> Self {
        let limits = &config.limits;
        TransportSettings {
            listen: config.sip.listen,
            public_address: config.sip.public_address,
            max_message_size: limits.max_message_size,
            source_rate: limits.source_rate,
            source_burst: limits.source_burst,
            tcp_idle: Duration::from_secs(limits.tcp_idle_timeout_s),
            tcp_max_connections: limits.tcp_max_connections,
            tcp_max_connections_per_source: limits.tcp_max_connections_per_source,
            trusted_sources: limits.trusted_sources.clone(),
            ua: UaSettings::from(config),
            registrar: RegistrarSettings::from(config),
            // Loaded (and checked) by the application, which may fail.
            tls: None,
        }
    }
}

/// Addressed as if bound to `sip.listen`; the transport re-addresses it once bound.
impl From<&Config> for UaSettings {
    fn from(config: &Config) -> Self {
        let t = &config.sip.timers;
        let mut settings = UaSettings {
            hotline_numbers: config.sip.hotline_numbers.iter().cloned().collect(),
            domain: config.sip.domain.clone(),
            server: config.sip.user_agent.clone(),
            contact_host: String::new(),
            contact_host_tls: String::new(),
            media_ip: config.sip.listen.ip(),
            answer_delay: Duration::from_millis(config.sip.answer_delay_ms),
            timers: Timers {
                t1: Duration::from_millis(t.t1_ms),
                t2: Duration::from_millis(t.t2_ms),
                t4: Duration::from_millis(t.t4_ms),
            },
            max_calls: config.limits.max_calls,
            peak_call_rate: config.limits.peak_call_rate,
            rtp_ports: (config.media.rtp_port_min, config.media.rtp_port_max),
            media_trusted: config.media.sdp_trusted_sources.clone(),
            // Seeded from the operating system: nonces, tags and branches must be
            // unpredictable.
            rng_seed: None,
            srtp: config.media.srtp,
        };
        settings.set_address(config.sip.public_address, config.sip.listen);
        settings
    }
}

impl From<&Config> for RegistrarSettings {
    fn from(config: &Config) -> Self {
        let limits = &config.limits;
        RegistrarSettings {
            realm: config.sip.domain.clone(),
            algorithms: config.sip.auth_algorithms.clone(),
            nonce_lifetime: Duration::from_secs(limits.nonce_lifetime_s),
            max_failures: limits.auth_max_failures,
            lockout: limits.auth_lockout(),
            min_expires: limits.register_min_expires,
            max_expires: limits.register_max_expires,
            server: config.sip.user_agent.clone(),
            accounts: config
                .operators
                .iter()
                .map(|op| (op.extension.clone(), op.resolve_password()))
                .collect(),
            require_tls: config
                .sip
                .tls
                .as_ref()
                .is_some_and(|t| t.require_for_operators),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::Algorithm;
    use std::net::IpAddr;

    const BASE: &str = "[sip]\nlisten = \"127.0.0.1:5070\"\ndomain = \"hotline.test\"\n\
        hotline_numbers = [\"8800\", \"8801\"]\n";

    #[test]
    fn the_core_is_addressed_as_configured() {
        let config = Config::from_toml(BASE).unwrap();
        let ua = UaSettings::from(&config);
        assert_eq!(ua.contact_host, "127.0.0.1:5070");
        assert_eq!(ua.media_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(ua.hotline_numbers.len(), 2);
        assert_eq!(ua.domain, "hotline.test");
        assert_eq!(ua.timers, Timers::default());
        assert_eq!(ua.peak_call_rate, 200);
        assert_eq!(ua.rtp_ports, (20000, 39999));
        assert_eq!(ua.answer_delay, Duration::ZERO);
        // A wildcard listen address: the public address if there is one, else loopback.
        let wild = BASE.replace("127.0.0.1:5070", "0.0.0.0:5070");
        let ua = UaSettings::from(&Config::from_toml(&wild).unwrap());
        assert_eq!(ua.contact_host, "127.0.0.1:5070");
        let public = wild.replace("domain", "public_address = \"2001:db8::7\"\ndomain");
        let ua = UaSettings::from(&Config::from_toml(&public).unwrap());
        assert_eq!(ua.contact_host, "[2001:db8::7]:5070");
        assert_eq!(ua.media_ip, "2001:db8::7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_registrar_and_transport_get_their_limits() {
        let toml = format!(
            "{BASE}auth_algorithms = [\"MD5\"]\n\n[limits]\nauth_lockout_minutes = 2\n\
             tcp_idle_timeout_s = 7\n\n\
             [[operators]]\nextension = \"1001\"\nname = \"A\"\npassword = \"pw\"\n"
        );
        let config = Config::from_toml(&toml).unwrap();
        let r = RegistrarSettings::from(&config);
        assert_eq!(r.realm, "hotline.test");
        assert_eq!(r.algorithms, vec![Algorithm::Md5]);
        assert_eq!(r.lockout, Duration::from_secs(120));
        assert_eq!(
            r.accounts,
            vec![("1001".to_string(), Some("pw".to_string()))]
        );
        let t = TransportSettings::from(&config);
        assert_eq!(t.listen, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(t.tcp_idle, Duration::from_secs(7));
        assert_eq!(t.max_message_size, 16 * 1024);
        assert_eq!(t.ua.server, config.sip.user_agent);
    }
}
