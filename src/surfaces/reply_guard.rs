//! Who may be answered: the reply-subject check that closes the confused deputy (issue 12,
//! finding 1).
//!
//! A NATS request carries the subject the requester wants its answer on, and the service
//! publishes there with its own (broad) NATS rights. Unchecked, a merchant that names
//! `$JS.API.STREAM.PURGE.ONECLICK_CMD` as its reply subject makes the service purge its own
//! command stream. So every reply subject must belong to the caller the request subject names:
//! - a merchant subject `<p>.v1.merchant.<id>.…` is answered only under
//!   `nats.merchant_inbox_prefix` + `<id>.` (`_INBOX.merchant_452739.…`), the inbox the shipped
//!   nats.conf lets only that merchant's user subscribe to;
//! - a gateway subject `<p>.v1.gw.…` only under `nats.gateway_inbox_prefix` (`_INBOX.gateway.…`);
//! - the health subject and `$SRV` discovery (public, read-only) only under
//!   `nats.health_inbox_prefix` (`_INBOX.…`).
//!
//! The reply must also be a literal subject: non-empty tokens, no wildcard, no whitespace or
//! control character. A request that fails the check is dropped before any work is done: no
//! reply, no engine call; the caller sees a timeout. [`super::respond`] is the only place that
//! publishes a reply, and it asks [`ReplyRules::allows`] first.

use crate::config::NatsSettings;

/// The caller a request subject names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `<p>.v1.gw.…`: the payment page.
    Gateway,
    /// `<p>.v1.merchant.<id>.…`
    Merchant(i64),
    /// The health subject and `$SRV` discovery: anyone with an inbox.
    Anyone,
}

impl Caller {
    /// The label of the refusal metric (never the merchant id: labels stay bounded).
    pub fn as_str(self) -> &'static str {
        match self {
            Caller::Gateway => "gateway",
            Caller::Merchant(_) => "merchant",
            Caller::Anyone => "anyone",
        }
    }

    /// The merchant id for logs (0 when the caller is not a merchant).
    pub fn merchant_id(self) -> i64 {
        match self {
            Caller::Merchant(id) => id,
            _ => 0,
        }
    }
}

/// The reply prefixes of each caller, from `[nats]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRules {
    gateway: String,
    merchant: String,
    anyone: String,
}

impl Default for ReplyRules {
    fn default() -> Self {
        ReplyRules::from_settings(&NatsSettings::default())
    }
}

impl ReplyRules {
    pub fn from_settings(nats: &NatsSettings) -> ReplyRules {
        ReplyRules {
            gateway: nats.gateway_inbox_prefix.clone(),
            merchant: nats.merchant_inbox_prefix.clone(),
            anyone: nats.health_inbox_prefix.clone(),
        }
    }

    /// Whether `reply` may receive the answer to a request of `caller`.
    pub fn allows(&self, caller: Caller, reply: &str) -> bool {
        if !is_literal_subject(reply) {
            return false;
        }
        let rest = match caller {
            Caller::Gateway => reply.strip_prefix(self.gateway.as_str()),
            Caller::Anyone => reply.strip_prefix(self.anyone.as_str()),
            Caller::Merchant(id) if id > 0 => reply
                .strip_prefix(self.merchant.as_str())
                .and_then(|r| r.strip_prefix(id.to_string().as_str()))
                .and_then(|r| r.strip_prefix('.')),
            Caller::Merchant(_) => None,
        };
        // Something must follow the prefix: the prefix alone names no one's inbox.
        rest.is_some_and(|r| !r.is_empty() && !r.starts_with('.'))
    }
}

/// A subject one can publish to: dot-separated non-empty tokens of printable ASCII, no
/// wildcard token, at most 512 bytes.
fn is_literal_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= 512
        && subject.bytes().all(|b| b.is_ascii_graphic())
        && subject
            .split('.')
            .all(|t| !t.is_empty() && t != "*" && t != ">")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ReplyRules {
        ReplyRules::default()
    }

    #[test]
    fn a_merchant_is_answered_on_its_own_inbox_only() {
        let r = rules();
        let me = Caller::Merchant(452739);
        assert!(r.allows(me, "_INBOX.merchant_452739.abc.1"));
        assert!(r.allows(me, "_INBOX.merchant_452739.x"));
        assert!(
            !r.allows(me, "_INBOX.merchant_4527390.x"),
            "a longer id is another merchant"
        );
        assert!(!r.allows(me, "_INBOX.merchant_45273.x"));
        assert!(!r.allows(me, "_INBOX.merchant_452740.x"));
        assert!(
            !r.allows(me, "_INBOX.merchant_452739"),
            "the bare prefix names no inbox"
        );
        assert!(!r.allows(me, "_INBOX.merchant_452739."));
        assert!(!r.allows(me, "_INBOX.gateway.x"));
        assert!(!r.allows(me, "_INBOX.abc"));
        assert!(!r.allows(Caller::Merchant(0), "_INBOX.merchant_0.x"));
    }

    #[test]
    fn jetstream_and_service_api_subjects_are_never_a_reply() {
        let r = rules();
        for reply in [
            "$JS.API.STREAM.PURGE.ONECLICK_CMD",
            "$JS.API.STREAM.DELETE.ONECLICK_EVT",
            "oneclick.v1.evt.452740.token_pay",
            "oneclick.v1.cmd.3.token_pay",
            "$SRV.PING",
            "acquirer.v1.authorize",
        ] {
            for caller in [Caller::Gateway, Caller::Merchant(452739), Caller::Anyone] {
                assert!(!r.allows(caller, reply), "{caller:?} → {reply}");
            }
        }
    }

    #[test]
    fn a_gateway_is_answered_on_the_gateway_inbox_only() {
        let r = rules();
        assert!(r.allows(Caller::Gateway, "_INBOX.gateway.nuid.7"));
        assert!(!r.allows(Caller::Gateway, "_INBOX.gatewayx.nuid"));
        assert!(!r.allows(Caller::Gateway, "_INBOX.merchant_452739.x"));
        assert!(!r.allows(Caller::Gateway, "_INBOX.abc"));
    }

    #[test]
    fn health_answers_any_inbox_but_nothing_else() {
        let r = rules();
        assert!(r.allows(Caller::Anyone, "_INBOX.abc.1"));
        assert!(r.allows(Caller::Anyone, "_INBOX.gateway.x"));
        assert!(!r.allows(Caller::Anyone, "_INBOX."));
        assert!(!r.allows(Caller::Anyone, "_INBOXX.a"));
    }

    #[test]
    fn wildcards_spaces_and_empty_tokens_are_refused() {
        let r = rules();
        for reply in [
            "_INBOX.gateway.>",
            "_INBOX.gateway.*",
            "_INBOX.gateway.a b",
            "_INBOX.gateway..a",
            "_INBOX.gateway.a.",
            "_INBOX.gateway.a\r\nPUB x 1",
            "",
        ] {
            assert!(!r.allows(Caller::Gateway, reply), "{reply:?}");
        }
    }
}
