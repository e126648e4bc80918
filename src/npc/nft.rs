//! The kernel side of `weft npc`: a [`Ruleset`] as one table of our own, `inet weft-npc`,
//! written through nftables' JSON interface (the `nftables` crate drives the `nft` tool) in one
//! transaction, so the kernel goes from the old ruleset to the new one with no window between.
//!
//! The table, hooked on `forward` (bridged pod traffic reaches it through br_netfilter):
//!
//! ```text
//! chain forward  (filter, forward, priority 0, policy drop)
//!     ct state established,related accept          replies and allowed flows: no policy cost
//!     ip saddr @egress_isolated jump egress        leaving a local pod isolated for egress
//!     ip daddr @ingress_isolated jump ingress      arriving at a local pod isolated for ingress
//!     accept                                       nothing isolates it
//! chain egress
//!     ip saddr . ip daddr @egress_any return       allowed: go on to the ingress check
//!     ip saddr . ip daddr . meta l4proto . th dport @egress_ports return
//!     ct state new limit … log group 86 prefix "weft-npc egress "
//!     drop
//! chain ingress   the same with ip daddr . ip saddr, ending in accept
//! ```
//!
//! The chain's policy is drop and its last rule accepts: with the rules in place nothing changes,
//! but a table someone flushes (rules and elements gone, chains kept) fails closed until the
//! controller restores it, instead of opening every isolated pod.
//!
//! The sets are concatenated interval sets keyed on (local pod, peer range[, protocol, port
//! range]); the compiler makes their elements disjoint.

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::batch::Batch;
use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Range,
};
use nftables::helper::{self, NftablesError};
use nftables::schema::{
    self, Chain, Element, NfListObject, Nftables, Rule, Set, SetFlag, SetType, SetTypeValue, Table,
};
use nftables::stmt::{JumpTarget, Limit, Log, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::model::Direction;
use super::ruleset::{AnyElement, DirectionRules, PortElement, Ruleset};

/// Our table (family `inet`), and nothing else, is what `weft npc` writes.
pub const TABLE: &str = "weft-npc";
/// The NFLOG group blocked connections are logged to (Weave Net's npc used 86).
pub const LOG_GROUP: u32 = 86;
/// Log at most this many blocked connections per second per direction (a port scan must not
/// flood the log or the controller), with this burst.
const LOG_RATE_PER_SECOND: u32 = 20;
const LOG_BURST: u32 = 40;
/// An update touching more than 1/this of the table's elements is written as a whole table
/// instead (measured with load-tests/npc_bench.rs: deleting tens of thousands of interval-set
/// elements took seconds, replacing the table about one).
const FULL_WRITE_SHARE: usize = 8;
/// The rules `render` writes: checked when looking for a flushed table.
pub const RULE_COUNT: usize = 4 + 4 + 4;

#[derive(Debug, thiserror::Error)]
pub enum NpcKernelError {
    #[error("cannot {op} nftables table inet {TABLE}{netns}: {source}", netns = netns_label(.netns))]
    Nft {
        op: &'static str,
        netns: Option<String>,
        #[source]
        source: Box<NftablesError>,
    },
}

fn netns_label(netns: &Option<String>) -> String {
    netns
        .as_ref()
        .map(|ns| format!(" in network namespace {ns}"))
        .unwrap_or_default()
}

/// What the controller needs of the kernel: narrow, so that the controller's logic is tested
/// with a recording double and this is tested against the real kernel.
pub trait PolicyKernel: Send {
    /// Replaces our table with `ruleset`, in one transaction.
    fn apply(&self, ruleset: &Ruleset) -> Result<(), NpcKernelError>;
    /// Changes our table, holding `old`, to hold `new`: only the elements that differ, in one
    /// transaction.
    fn update(&self, old: &Ruleset, new: &Ruleset) -> Result<(), NpcKernelError>;
    /// How many rules our table holds now (`None`: no table): a flushed or deleted table is
    /// told apart from ours by this.
    fn installed_rules(&self) -> Result<Option<usize>, NpcKernelError>;
    /// Removes our table; `false` when there was none.
    fn remove(&self) -> Result<bool, NpcKernelError>;
}

/// The `nft` tool, in this network namespace or (for tests) in a named one.
#[derive(Clone, Debug, Default)]
pub struct Nft {
    pub netns: Option<String>,
}

impl Nft {
    fn run(&self, op: &'static str, payload: &str) -> Result<String, NpcKernelError> {
        let fail = |source| NpcKernelError::Nft {
            op,
            netns: self.netns.clone(),
            source: Box::new(source),
        };
        match &self.netns {
            None => helper::apply_ruleset_raw(payload, helper::DEFAULT_NFT, helper::DEFAULT_ARGS),
            Some(ns) => helper::apply_ruleset_raw(
                payload,
                Some("ip"),
                ["netns", "exec", ns.as_str(), "nft"],
            ),
        }
        .map_err(fail)
    }

    fn list(&self) -> Result<Option<Nftables<'static>>, NpcKernelError> {
        let args = ["list", "table", "inet", TABLE];
        let listed = match &self.netns {
            None => helper::get_current_ruleset_raw(helper::DEFAULT_NFT, args),
            Some(ns) => helper::get_current_ruleset_raw(
                Some("ip"),
                ["netns", "exec", ns.as_str(), "nft", "-j"]
                    .into_iter()
                    .chain(args),
            ),
        };
        match listed {
            Ok(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|err| NpcKernelError::Nft {
                    op: "read",
                    netns: self.netns.clone(),
                    source: Box::new(NftablesError::NftInvalidJson(err)),
                }),
            // No such table: nft says so on stderr and fails.
            Err(NftablesError::NftFailed { stderr, .. }) if stderr.contains("No such file") => {
                Ok(None)
            }
            Err(source) => Err(NpcKernelError::Nft {
                op: "read",
                netns: self.netns.clone(),
                source: Box::new(source),
            }),
        }
    }
}

impl PolicyKernel for Nft {
    fn apply(&self, ruleset: &Ruleset) -> Result<(), NpcKernelError> {
        let payload = serde_json::to_string(&render(ruleset)).expect("a ruleset always serialises");
        self.run("write", &payload).map(drop)
    }

    fn update(&self, old: &Ruleset, new: &Ruleset) -> Result<(), NpcKernelError> {
        let (changed, update) = render_update_counted(old, new);
        if changed == 0 {
            return Ok(());
        }
        // Deleting elements of a concatenated interval set costs the kernel far more per element
        // than adding them: past this share of the table, writing it whole is faster.
        if changed * FULL_WRITE_SHARE > new.element_count() {
            return self.apply(new);
        }
        let payload = serde_json::to_string(&update).expect("an update always serialises");
        self.run("update", &payload).map(drop)
    }

    fn installed_rules(&self) -> Result<Option<usize>, NpcKernelError> {
        Ok(self.list()?.map(|listing| {
            listing
                .objects
                .iter()
                .filter(|object| {
                    matches!(object, schema::NfObject::ListObject(NfListObject::Rule(_)))
                })
                .count()
        }))
    }

    fn remove(&self) -> Result<bool, NpcKernelError> {
        if self.list()?.is_none() {
            return Ok(false);
        }
        let mut batch = Batch::new();
        batch.delete(NfListObject::Table(table()));
        let payload = serde_json::to_string(&batch.to_nftables()).expect("serialises");
        self.run("remove", &payload).map(|_| true)
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

/// The whole table as one batch: add (so that the delete finds it), delete, and build anew.
pub fn render(ruleset: &Ruleset) -> Nftables<'static> {
    let mut batch = Batch::new();
    batch.add(NfListObject::Table(table()));
    batch.delete(NfListObject::Table(table()));
    batch.add(NfListObject::Table(table()));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: "forward".into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Forward),
        prio: Some(0),
        policy: Some(NfChainPolicy::Drop),
        ..Chain::default()
    }));
    for direction in [Direction::Egress, Direction::Ingress] {
        batch.add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: direction.as_str().into(),
            ..Chain::default()
        }));
        let rules = ruleset.direction(direction);
        add_sets(&mut batch, direction, rules);
    }
    let rule = |chain: &str, expr: Vec<Statement<'static>>| {
        NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: TABLE.into(),
            chain: chain.to_string().into(),
            expr: expr.into(),
            handle: None,
            index: None,
            comment: None,
        })
    };
    batch.add(rule(
        "forward",
        vec![
            matches(
                ct("state"),
                Expression::List(vec![text("established"), text("related")]),
                Operator::IN,
            ),
            Statement::Accept(None),
        ],
    ));
    for direction in [Direction::Egress, Direction::Ingress] {
        let pod_end = match direction {
            Direction::Egress => "saddr",
            Direction::Ingress => "daddr",
        };
        batch.add(rule(
            "forward",
            vec![
                matches(ip(pod_end), set_ref(direction, "isolated"), Operator::EQ),
                Statement::Jump(JumpTarget {
                    target: direction.as_str().into(),
                }),
            ],
        ));
    }
    batch.add(rule("forward", vec![Statement::Accept(None)]));
    for direction in [Direction::Egress, Direction::Ingress] {
        let (pod_end, peer_end) = match direction {
            Direction::Egress => ("saddr", "daddr"),
            Direction::Ingress => ("daddr", "saddr"),
        };
        let allowed = || match direction {
            // Allowed on the way out: the destination's ingress is checked next.
            Direction::Egress => Statement::Return(None),
            Direction::Ingress => Statement::Accept(None),
        };
        let chain = direction.as_str();
        batch.add(rule(
            chain,
            vec![
                matches(
                    concat(vec![ip(pod_end), ip(peer_end)]),
                    set_ref(direction, "any"),
                    Operator::EQ,
                ),
                allowed(),
            ],
        ));
        batch.add(rule(
            chain,
            vec![
                matches(
                    concat(vec![
                        ip(pod_end),
                        ip(peer_end),
                        meta(MetaKey::L4proto),
                        payload("th", "dport"),
                    ]),
                    set_ref(direction, "ports"),
                    Operator::EQ,
                ),
                allowed(),
            ],
        ));
        batch.add(rule(
            chain,
            vec![
                matches(ct("state"), text("new"), Operator::EQ),
                Statement::Limit(Limit {
                    rate: LOG_RATE_PER_SECOND,
                    rate_unit: None,
                    per: Some("second".into()),
                    burst: Some(LOG_BURST),
                    burst_unit: None,
                    inv: None,
                }),
                Statement::Log(Some(Log {
                    prefix: Some(format!("{TABLE} {chain} ").into()),
                    ..Log::new(Some(LOG_GROUP))
                })),
            ],
        ));
        batch.add(rule(chain, vec![Statement::Drop(None)]));
    }
    batch.to_nftables()
}

fn add_sets(batch: &mut Batch<'static>, direction: Direction, rules: &DirectionRules) {
    let set =
        |suffix: &str, types: Vec<SetType>, interval: bool, elements: Vec<Expression<'static>>| {
            NfListObject::Set(Box::new(Set {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: set_name(direction, suffix).into(),
                handle: None,
                set_type: if types.len() == 1 {
                    SetTypeValue::Single(types[0])
                } else {
                    SetTypeValue::Concatenated(types.into())
                },
                policy: None,
                flags: interval.then(|| HashSet::from([SetFlag::Interval])),
                // nft refuses an empty element list: an empty set has none at all.
                elem: (!elements.is_empty()).then(|| elements.into()),
                timeout: None,
                gc_interval: None,
                size: None,
                comment: None,
            }))
        };
    batch.add(set(
        "isolated",
        vec![SetType::Ipv4Addr],
        false,
        isolated_elements(rules.isolated.iter()),
    ));
    batch.add(set(
        "any",
        vec![SetType::Ipv4Addr, SetType::Ipv4Addr],
        true,
        any_elements(rules.any.iter()),
    ));
    batch.add(set(
        "ports",
        vec![
            SetType::Ipv4Addr,
            SetType::Ipv4Addr,
            SetType::InetProto,
            SetType::InetService,
        ],
        true,
        port_elements(rules.ports.iter()),
    ));
}

fn isolated_elements<'a>(
    pods: impl Iterator<Item = &'a std::net::Ipv4Addr>,
) -> Vec<Expression<'static>> {
    pods.map(|ip| text(ip.to_string())).collect()
}

fn any_elements<'a>(elements: impl Iterator<Item = &'a AnyElement>) -> Vec<Expression<'static>> {
    elements
        .map(|element| concat(vec![text(element.pod.to_string()), ip_range(element.peer)]))
        .collect()
}

fn port_elements<'a>(elements: impl Iterator<Item = &'a PortElement>) -> Vec<Expression<'static>> {
    elements
        .map(|element| {
            let ports = if element.ports.first == element.ports.last {
                Expression::Number(u32::from(element.ports.first))
            } else {
                range(
                    Expression::Number(u32::from(element.ports.first)),
                    Expression::Number(u32::from(element.ports.last)),
                )
            };
            concat(vec![
                text(element.pod.to_string()),
                ip_range(element.peer),
                text(element.protocol.as_str()),
                ports,
            ])
        })
        .collect()
}

/// The change from `old` to `new` as element deletions then additions, in one batch: the
/// table's structure never changes, so a policy or pod change costs what it changes, not the
/// whole table.
pub fn render_update(old: &Ruleset, new: &Ruleset) -> Nftables<'static> {
    render_update_counted(old, new).1
}

/// [`render_update`], with the number of elements it deletes and adds.
fn render_update_counted(old: &Ruleset, new: &Ruleset) -> (usize, Nftables<'static>) {
    use std::collections::BTreeSet;
    fn gone_and_new<'a, T: Ord>(old: &'a [T], new: &'a [T]) -> (Vec<&'a T>, Vec<&'a T>) {
        let old_set: BTreeSet<&T> = old.iter().collect();
        let new_set: BTreeSet<&T> = new.iter().collect();
        (
            old_set.difference(&new_set).copied().collect(),
            new_set.difference(&old_set).copied().collect(),
        )
    }
    let element = |direction: Direction, suffix: &str, elem: Vec<Expression<'static>>| {
        NfListObject::Element(Element {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: set_name(direction, suffix).into(),
            elem: elem.into(),
        })
    };
    let mut deletions = Batch::new();
    let mut additions = Batch::new();
    let mut changed = 0;
    for direction in [Direction::Egress, Direction::Ingress] {
        let (before, after) = (old.direction(direction), new.direction(direction));
        let old_isolated: Vec<_> = before.isolated.iter().copied().collect();
        let new_isolated: Vec<_> = after.isolated.iter().copied().collect();
        let changes = [
            ("isolated", {
                let (gone, added) = gone_and_new(&old_isolated, &new_isolated);
                (
                    isolated_elements(gone.into_iter()),
                    isolated_elements(added.into_iter()),
                )
            }),
            ("any", {
                let (gone, added) = gone_and_new(&before.any, &after.any);
                (
                    any_elements(gone.into_iter()),
                    any_elements(added.into_iter()),
                )
            }),
            ("ports", {
                let (gone, added) = gone_and_new(&before.ports, &after.ports);
                (
                    port_elements(gone.into_iter()),
                    port_elements(added.into_iter()),
                )
            }),
        ];
        for (suffix, (gone, added)) in changes {
            changed += gone.len() + added.len();
            if !gone.is_empty() {
                deletions.delete(element(direction, suffix, gone));
            }
            if !added.is_empty() {
                additions.add(element(direction, suffix, added));
            }
        }
    }
    let mut objects = deletions.to_nftables().objects.into_owned();
    objects.extend(additions.to_nftables().objects.into_owned());
    (
        changed,
        Nftables {
            objects: objects.into(),
        },
    )
}

fn set_name(direction: Direction, suffix: &str) -> String {
    format!("{}_{suffix}", direction.as_str())
}

fn set_ref(direction: Direction, suffix: &str) -> Expression<'static> {
    text(format!("@{}", set_name(direction, suffix)))
}

fn text(value: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(value.into())
}

fn range(first: Expression<'static>, last: Expression<'static>) -> Expression<'static> {
    Expression::Range(Box::new(Range {
        range: [first, last],
    }))
}

fn ip_range(peer: super::ranges::IpRange) -> Expression<'static> {
    if peer.first == peer.last {
        text(peer.first_addr().to_string())
    } else {
        range(
            text(peer.first_addr().to_string()),
            text(peer.last_addr().to_string()),
        )
    }
}

fn concat(parts: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(parts))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn ip(field: &'static str) -> Expression<'static> {
    payload("ip", field)
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

fn matches(
    left: Expression<'static>,
    right: Expression<'static>,
    op: Operator,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}
