//! Where an operator chose to be rung: their SIP phone, the browser phone in the console,
//! or both.

/// Where an operator's calls ring. Kept per operator in the records
/// ([`crate::desk::Records::set_ring_at`]) and loaded at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingAt {
    /// The registered SIP phone (the default: nothing changes for an operator who never
    /// chose).
    #[default]
    Phone,
    /// The browser phone in the console.
    Browser,
    /// Both at once: the first to answer takes the call, the other is cancelled.
    Both,
}

impl RingAt {
    pub fn as_str(self) -> &'static str {
        match self {
            RingAt::Phone => "phone",
            RingAt::Browser => "browser",
            RingAt::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<RingAt> {
        [RingAt::Phone, RingAt::Browser, RingAt::Both]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Whether an operator who chose this can be rung, given their SIP registration and
    /// their browser phone.
    pub fn reachable(self, sip_registered: bool, browser_connected: bool) -> bool {
        match self {
            RingAt::Phone => sip_registered,
            RingAt::Browser => browser_connected,
            RingAt::Both => sip_registered || browser_connected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RingAt;

    #[test]
    fn names_round_trip_and_reachability_follows_the_choice() {
        for r in [RingAt::Phone, RingAt::Browser, RingAt::Both] {
            assert_eq!(RingAt::parse(r.as_str()), Some(r));
        }
        assert_eq!(RingAt::parse("desk"), None);
        assert_eq!(RingAt::default(), RingAt::Phone);
        assert!(RingAt::Phone.reachable(true, false));
        assert!(!RingAt::Phone.reachable(false, true));
        assert!(RingAt::Browser.reachable(false, true));
        assert!(!RingAt::Browser.reachable(true, false));
        assert!(RingAt::Both.reachable(true, false) && RingAt::Both.reachable(false, true));
        assert!(!RingAt::Both.reachable(false, false));
    }
}
