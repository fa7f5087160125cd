//! Every NATS subject, stream and consumer name oneclick uses, built from one configurable prefix.
//!
//! Invariants:
//! - everything lives under `<prefix>.v1.`; the prefix is one subject token (`[A-Za-z0-9_-]+`,
//!   checked by `nats.prefix` validation) so tests can isolate themselves with a unique prefix;
//! - no other module formats a subject string: handlers, consumers and clients all call
//!   [`Subjects`], so docs/protocol.md and docs/asyncapi.yaml describe exactly these builders;
//! - the partition of a durable command depends only on its key and the partition count
//!   ([`partition`]), so every instance routes one customer's commands to one ordered consumer.

use std::fmt;

use crate::wire::command::CommandKind;

/// Service name for the NATS micro-service API (`$SRV.PING.oneclick`, …).
pub const SERVICE_NAME: &str = "oneclick";

/// The default prefix of every subject.
pub const DEFAULT_PREFIX: &str = "oneclick";

/// The default number of command partitions (one ordered JetStream consumer each).
pub const DEFAULT_PARTITIONS: u32 = 8;

/// The acquirer connector's default request-reply subject (outside our prefix: the acquiring
/// host owns it).
pub const ACQUIRER_AUTHORIZE: &str = "acquirer.v1.authorize";

/// Request-reply endpoints the payment page (gateway) calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayEndpoint {
    /// R4: what to offer (read-only).
    Offer,
    /// Pay with a new card (optionally saving it, or starting a recurring agreement).
    Pay,
    /// Pay with a saved card (+ CVC when the merchant needs it).
    PaySaved,
    /// Registration transaction (verify and save, no payment).
    Register,
    /// The customer deletes the current card.
    DeleteCard,
}

impl GatewayEndpoint {
    pub const ALL: &'static [GatewayEndpoint] = &[
        GatewayEndpoint::Offer,
        GatewayEndpoint::Pay,
        GatewayEndpoint::PaySaved,
        GatewayEndpoint::Register,
        GatewayEndpoint::DeleteCard,
    ];

    /// The last subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayEndpoint::Offer => "offer",
            GatewayEndpoint::Pay => "pay",
            GatewayEndpoint::PaySaved => "pay_saved",
            GatewayEndpoint::Register => "register",
            GatewayEndpoint::DeleteCard => "delete_card",
        }
    }
}

/// Request-reply endpoints of the merchant web services (`<p>.v1.merchant.<id>.<endpoint>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MerchantEndpoint {
    TokenList,
    TokenRemove,
    TokenPay,
    OrderState,
    CustomersList,
    CustomersStatus,
}

impl MerchantEndpoint {
    pub const ALL: &'static [MerchantEndpoint] = &[
        MerchantEndpoint::TokenList,
        MerchantEndpoint::TokenRemove,
        MerchantEndpoint::TokenPay,
        MerchantEndpoint::OrderState,
        MerchantEndpoint::CustomersList,
        MerchantEndpoint::CustomersStatus,
    ];

    /// The two subject tokens after the merchant id.
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantEndpoint::TokenList => "token.list",
            MerchantEndpoint::TokenRemove => "token.remove",
            MerchantEndpoint::TokenPay => "token.pay",
            MerchantEndpoint::OrderState => "order.state",
            MerchantEndpoint::CustomersList => "customers.list",
            MerchantEndpoint::CustomersStatus => "customers.status",
        }
    }

    pub fn parse(suffix: &str) -> Option<MerchantEndpoint> {
        MerchantEndpoint::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == suffix)
    }
}

impl fmt::Display for MerchantEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A concrete merchant subject, taken apart by [`Subjects::parse_merchant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MerchantSubject {
    pub merchant_id: i64,
    pub endpoint: MerchantEndpoint,
}

/// Subject builder for one prefix. Cheap to clone; build once from `nats.prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    pub prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::new(DEFAULT_PREFIX)
    }
}

impl Subjects {
    pub fn new(prefix: impl Into<String>) -> Subjects {
        Subjects {
            prefix: prefix.into(),
        }
    }

    /// `<prefix>.v1`
    fn root(&self) -> String {
        format!("{}.v1", self.prefix)
    }

    // ---- gateway -------------------------------------------------------------------------------

    /// `<p>.v1.gw.<endpoint>`
    pub fn gateway(&self, endpoint: GatewayEndpoint) -> String {
        format!("{}.gw.{}", self.root(), endpoint.as_str())
    }

    // ---- merchants -----------------------------------------------------------------------------

    /// `<p>.v1.merchant.<merchant_id>.<endpoint>`
    pub fn merchant(&self, merchant_id: i64, endpoint: MerchantEndpoint) -> String {
        format!(
            "{}.merchant.{}.{}",
            self.root(),
            merchant_id,
            endpoint.as_str()
        )
    }

    /// `<p>.v1.merchant.*.<endpoint>`: what the service subscribes to.
    pub fn merchant_wildcard(&self, endpoint: MerchantEndpoint) -> String {
        format!("{}.merchant.*.{}", self.root(), endpoint.as_str())
    }

    /// `<p>.v1.merchant.<merchant_id>.>`: what one merchant's NATS user may publish to.
    pub fn merchant_all(&self, merchant_id: i64) -> String {
        format!("{}.merchant.{}.>", self.root(), merchant_id)
    }

    /// Takes a concrete merchant subject apart. `None` when it is not one of ours, the merchant
    /// id is not a positive decimal integer, or the endpoint is unknown.
    pub fn parse_merchant(&self, subject: &str) -> Option<MerchantSubject> {
        let rest = subject
            .strip_prefix(&self.root())?
            .strip_prefix(".merchant.")?;
        let (id, endpoint) = rest.split_once('.')?;
        if id.is_empty() || id.len() > 18 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let merchant_id: i64 = id.parse().ok()?;
        if merchant_id <= 0 {
            return None;
        }
        let endpoint = MerchantEndpoint::parse(endpoint)?;
        Some(MerchantSubject {
            merchant_id,
            endpoint,
        })
    }

    // ---- durable commands (JetStream) ----------------------------------------------------------

    /// `<PREFIX>_CMD`: the work-queue stream of durable commands.
    pub fn command_stream(&self) -> String {
        format!("{}_CMD", self.stream_base())
    }

    /// `<p>.v1.cmd.>`: the command stream's subjects.
    pub fn command_wildcard(&self) -> String {
        format!("{}.cmd.>", self.root())
    }

    /// `<p>.v1.cmd.<partition>.<kind>`: where a durable command is published.
    pub fn command(&self, partition: u32, kind: CommandKind) -> String {
        format!("{}.cmd.{}.{}", self.root(), partition, kind.as_str())
    }

    /// `<p>.v1.cmd.<partition>.>`: the filter of one partition's consumer.
    pub fn command_partition_filter(&self, partition: u32) -> String {
        format!("{}.cmd.{}.>", self.root(), partition)
    }

    /// Durable name of one partition's consumer (`cmd-p3`); no dots allowed in consumer names.
    pub fn command_consumer(&self, partition: u32) -> String {
        format!("cmd-p{partition}")
    }

    /// Takes a concrete command subject apart: `(partition, kind)`.
    pub fn parse_command(&self, subject: &str) -> Option<(u32, CommandKind)> {
        let rest = subject.strip_prefix(&self.root())?.strip_prefix(".cmd.")?;
        let (partition, kind) = rest.split_once('.')?;
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((partition.parse().ok()?, CommandKind::parse(kind)?))
    }

    // ---- events (JetStream) --------------------------------------------------------------------

    /// `<PREFIX>_EVT`: the stream of command results and dead letters.
    pub fn event_stream(&self) -> String {
        format!("{}_EVT", self.stream_base())
    }

    /// `<p>.v1.evt.>`: the event stream's subjects.
    pub fn event_wildcard(&self) -> String {
        format!("{}.evt.>", self.root())
    }

    /// `<p>.v1.evt.<merchant_id>.<kind>`: the result of one durable command.
    pub fn event(&self, merchant_id: i64, kind: CommandKind) -> String {
        format!("{}.evt.{}.{}", self.root(), merchant_id, kind.as_str())
    }

    /// `<p>.v1.evt.dlq.<kind>`: a command given up on. `kind` is the subject's last token, which
    /// is all that is known of a command that could not be parsed.
    pub fn dead_letter(&self, kind: &str) -> String {
        format!("{}.evt.dlq.{}", self.root(), kind)
    }

    // ---- health --------------------------------------------------------------------------------

    /// `<p>.v1.health`
    pub fn health(&self) -> String {
        format!("{}.health", self.root())
    }

    /// The prefix upper-cased with `-` turned into `_` (`ONECLICK`); the prefix is one subject
    /// token, so the result is a valid stream name.
    fn stream_base(&self) -> String {
        self.prefix.to_ascii_uppercase().replace('-', "_")
    }
}

/// The prohibited characters the original strips from customer numbers (docs/rules.md R1, §4).
const STRIPPED: &[char] = &['<', '>', '"', '=', '\'', '/', '\\', '(', ')', ';', '#'];

/// FNV-1a, 32 bit (offset basis 2166136261, prime 16777619): short, stable across versions,
/// platforms and languages (any publisher can compute it), and spreads similar keys well.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for &b in bytes {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The partition of a durable command: `fnv1a32(key) % partitions` (0 when `partitions` is 0).
pub fn partition(key: &str, partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    fnv1a32(key.as_bytes()) % partitions
}

/// The partition key of a customer's command: the customer number with the original's
/// prohibited characters stripped (R1), so `12<3` and `123`, which are one customer, share a
/// partition. Not keyed by merchant: merchants of one union share customers.
pub fn customer_partition_key(customer_number: &str) -> String {
    customer_number
        .chars()
        .filter(|c| !STRIPPED.contains(c))
        .collect()
}

/// The partition key of a recurring charge: its agreement, `merchant_id:initial_order_number`.
pub fn agreement_partition_key(merchant_id: i64, initial_order_number: &str) -> String {
    format!("{merchant_id}:{initial_order_number}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_subjects_live_under_the_prefix() {
        let s = Subjects::default();
        assert_eq!(s.gateway(GatewayEndpoint::Offer), "oneclick.v1.gw.offer");
        assert_eq!(s.gateway(GatewayEndpoint::Pay), "oneclick.v1.gw.pay");
        assert_eq!(
            s.gateway(GatewayEndpoint::PaySaved),
            "oneclick.v1.gw.pay_saved"
        );
        assert_eq!(
            s.gateway(GatewayEndpoint::Register),
            "oneclick.v1.gw.register"
        );
        assert_eq!(
            s.gateway(GatewayEndpoint::DeleteCard),
            "oneclick.v1.gw.delete_card"
        );
        assert_eq!(Subjects::new("t_42").health(), "t_42.v1.health");
    }

    #[test]
    fn merchant_subjects_and_wildcards() {
        let s = Subjects::default();
        assert_eq!(
            s.merchant(452739, MerchantEndpoint::TokenList),
            "oneclick.v1.merchant.452739.token.list"
        );
        assert_eq!(
            s.merchant_wildcard(MerchantEndpoint::CustomersStatus),
            "oneclick.v1.merchant.*.customers.status"
        );
        assert_eq!(s.merchant_all(7), "oneclick.v1.merchant.7.>");
    }

    #[test]
    fn parser_round_trips_every_merchant_endpoint() {
        let s = Subjects::new("px");
        for &endpoint in MerchantEndpoint::ALL {
            let subject = s.merchant(452739, endpoint);
            assert_eq!(
                s.parse_merchant(&subject),
                Some(MerchantSubject {
                    merchant_id: 452739,
                    endpoint
                })
            );
        }
    }

    #[test]
    fn parser_refuses_foreign_or_malformed_subjects() {
        let s = Subjects::default();
        for bad in [
            "other.v1.merchant.1.token.list",
            "oneclick.v2.merchant.1.token.list",
            "oneclick.v1.merchant.0.token.list",
            "oneclick.v1.merchant.-1.token.list",
            "oneclick.v1.merchant.abc.token.list",
            "oneclick.v1.merchant..token.list",
            "oneclick.v1.merchant.1.token.drop",
            "oneclick.v1.merchant.1.token.list.extra",
            "oneclick.v1.merchant.99999999999999999999.token.list",
            "oneclickx.v1.merchant.1.token.list",
        ] {
            assert_eq!(s.parse_merchant(bad), None, "{bad}");
        }
    }

    #[test]
    fn command_and_event_subjects() {
        let s = Subjects::default();
        assert_eq!(s.command_stream(), "ONECLICK_CMD");
        assert_eq!(s.event_stream(), "ONECLICK_EVT");
        assert_eq!(Subjects::new("t-1").command_stream(), "T_1_CMD");
        assert_eq!(s.command_wildcard(), "oneclick.v1.cmd.>");
        assert_eq!(
            s.command(3, CommandKind::TokenPay),
            "oneclick.v1.cmd.3.token_pay"
        );
        assert_eq!(s.command_partition_filter(3), "oneclick.v1.cmd.3.>");
        assert_eq!(s.command_consumer(3), "cmd-p3");
        assert_eq!(s.event_wildcard(), "oneclick.v1.evt.>");
        assert_eq!(
            s.event(452739, CommandKind::RecurringCharge),
            "oneclick.v1.evt.452739.recurring_charge"
        );
        assert_eq!(
            s.dead_letter("set_status"),
            "oneclick.v1.evt.dlq.set_status"
        );
        for &kind in CommandKind::ALL {
            assert_eq!(s.parse_command(&s.command(5, kind)), Some((5, kind)));
        }
        assert_eq!(s.parse_command("oneclick.v1.cmd.x.token_pay"), None);
        assert_eq!(s.parse_command("oneclick.v1.cmd.1.unknown"), None);
    }

    #[test]
    fn fnv1a32_matches_the_published_test_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9cf968);
    }

    #[test]
    fn partition_is_stable_and_in_range() {
        assert_eq!(partition("foobar", 8), 0xbf9cf968 % 8);
        for n in 1..=64 {
            for key in ["1234", "customer-7", "452739:order-1", ""] {
                assert!(partition(key, n) < n);
                assert_eq!(partition(key, n), partition(key, n));
            }
        }
        assert_eq!(partition("x", 0), 0);
    }

    #[test]
    fn one_customer_spelled_with_prohibited_characters_keeps_its_partition() {
        assert_eq!(customer_partition_key("12<3>"), "123");
        assert_eq!(
            partition(&customer_partition_key("(12)3;"), 8),
            partition(&customer_partition_key("123"), 8)
        );
        assert_eq!(agreement_partition_key(452739, "A-1"), "452739:A-1");
    }

    #[test]
    fn constants() {
        assert_eq!(SERVICE_NAME, "oneclick");
        assert_eq!(ACQUIRER_AUTHORIZE, "acquirer.v1.authorize");
        assert_eq!(DEFAULT_PARTITIONS, 8);
    }
}
