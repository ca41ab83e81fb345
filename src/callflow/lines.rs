//! Where the call flow rings an operator: their SIP phone through the SIP core, their
//! browser phone through [`BrowserPhones`], or both (the operator's [`RingAt`]). Either
//! way a leg's progress comes back as the same events, so the call flow does not know
//! which it rang.

use crate::phone::hub::{BrowserPhones, RingAt};
use crate::sip::transport::SipControl;
use crate::sip::ua::{EndReason, Originate, OriginateError};

#[derive(Clone)]
pub struct OperatorLines {
    pub sip: SipControl,
    /// `None` where the browser phone is not served.
    pub phones: Option<BrowserPhones>,
}

impl OperatorLines {
    /// Rings `o.extension` where they chose: one leg, or two when they chose both and
    /// both can ring (the first to answer wins; [`OperatorLines::cancel`] the other).
    pub async fn originate(&self, o: Originate) -> Result<Vec<u64>, OriginateError> {
        let ring_at = match &self.phones {
            Some(p) => p.ring_at(&o.extension),
            None => RingAt::Phone,
        };
        let browser = |o: Originate| match &self.phones {
            Some(p) => p.ring(o),
            None => Err(OriginateError::NotRegistered(o.extension)),
        };
        match ring_at {
            RingAt::Phone => self.sip.originate(o).await.map(|leg| vec![leg]),
            RingAt::Browser => browser(o).map(|leg| vec![leg]),
            RingAt::Both => {
                let sip = self.sip.originate(o.clone()).await;
                let web = browser(o);
                match (sip, web) {
                    (Ok(a), Ok(b)) => Ok(vec![a, b]),
                    (Ok(a), Err(_)) => Ok(vec![a]),
                    (Err(_), Ok(b)) => Ok(vec![b]),
                    (Err(e), Err(_)) => Err(e),
                }
            }
        }
    }

    /// Withdraws a leg that rings (CANCEL, or the ring taken off the page).
    pub async fn cancel(&self, leg: u64) {
        match &self.phones {
            Some(p) if BrowserPhones::owns(leg) => p.cancel(leg),
            _ => self.sip.cancel(leg).await,
        }
    }

    /// Ends a call or a leg from our side.
    pub async fn hangup(&self, call: u64, reason: EndReason) {
        match &self.phones {
            Some(p) if BrowserPhones::owns(call) => p.hang_up_leg(call, reason),
            _ => self.sip.hangup(call, reason).await,
        }
    }

    /// Whether `extension` can be rung, given their SIP registration.
    pub fn reachable(&self, extension: &str, sip_registered: bool) -> bool {
        match &self.phones {
            Some(p) => p.reachable(extension, sip_registered),
            None => sip_registered,
        }
    }
}
