//! A [`Ruleset`] as nftables JSON, pure: the whole table as one batch (start-up, restores), and
//! the change from one ruleset to the next as one batch touching only what differs.
//!
//! The table `inet weft-npc`, hooked on `forward` (bridged pod traffic reaches it through
//! br_netfilter):
//!
//! ```text
//! chain forward  (filter, forward, priority 0, policy drop)
//!     ct state established,related accept         replies and allowed flows: no policy cost
//!     ip saddr @egress_isolated jump egress       leaving a local pod isolated for egress
//!     jump ingress                                 decides, always
//! chain egress
//!     ip saddr @e-<id>-t jump egress-<id>         one per policy isolating local pods for egress
//!     ct state new limit … log group 86 prefix "weft-npc egress "
//!     drop
//! chain egress-<id>                                one policy: each rule allows with `goto ingress`
//!     [ip daddr @e-<id>-<n>-pods] [meta l4proto . th dport @e-<id>-<n>-ports] goto ingress
//!     [ip daddr @e-<id>-<n>-blocks] [… the same]
//!     [ip daddr @e-<id>-<n>-pods] ip daddr . meta l4proto . th dport @e-<id>-<n>-named goto ingress
//!     [ip daddr @e-<id>-<n>-blocks] [… the same]
//! chain ingress
//!     ip daddr != @ingress_isolated accept
//!     ip daddr @i-<id>-t jump ingress-<id>
//!     ct state new limit … log group 86 prefix "weft-npc ingress "; drop
//! chain ingress-<id>                               the same with ip saddr for peers, and accept
//! ```
//!
//! An egress policy that allows a packet goes to the ingress check (`goto`: the ingress chain
//! always ends in a verdict, so nothing returns into the egress chain's drop). The forward
//! chain's policy is drop and nothing falls off its end: a table someone flushes (rules and
//! elements gone, chains kept) fails closed until the controller restores it.
//!
//! Sets per policy: its targets (local pods, a hash set); per rule, the peer pods (a hash set),
//! the peer blocks (an interval set of disjoint ranges, as many as the ipBlocks say), numeric
//! ports (`inet_proto . inet_service` intervals, a handful) and named ports resolved per
//! destination (`ipv4_addr . inet_proto . inet_service`, exact). None is a product of pods and
//! peers, and the sets that grow with the pods are hash sets. Both matter for the time a change
//! takes: deleting elements from a large concatenated interval set (nft_set_pipapo) cost
//! seconds per change at 70,000 elements (measured with load-tests/npc_bench.rs, the former
//! design), and the `nft` tool (1.0.6) reads every interval set's elements before each
//! transaction (about 100 ms with 15,000 of them, 10 ms with as many in a hash set).

use std::collections::BTreeSet;

use nftables::batch::Batch;
use nftables::expr::{Expression, MetaKey};
use nftables::schema::{
    Chain, Element, FlushObject, NfCmd, NfListObject, Nftables, SetType, Table,
};
use nftables::stmt::{JumpTarget, Limit, Log, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::model::Direction;
use super::ruleset::{PolicyRules, Ruleset};

mod nft_json;
use nft_json::*;

/// Our table (family `inet`), and nothing else, is what `weft npc` writes.
pub const TABLE: &str = "weft-npc";
/// The NFLOG group blocked connections are logged to (Weave Net's npc used 86).
pub const LOG_GROUP: u32 = 86;
/// Log at most this many blocked connections per second per direction (a port scan must not
/// flood the log or the controller), with this burst.
const LOG_RATE_PER_SECOND: u32 = 20;
const LOG_BURST: u32 = 40;
/// Rules of the fixed chains: forward 3, egress 2 and ingress 3 besides one per policy.
const FIXED_RULES: usize = 3 + 2 + 3;

const DIRECTIONS: [Direction; 2] = [Direction::Egress, Direction::Ingress];

/// How many rules [`render`] writes for `ruleset`: a table holding another number was flushed or
/// edited by someone else.
pub fn rule_count(ruleset: &Ruleset) -> usize {
    FIXED_RULES
        + DIRECTIONS
            .iter()
            .flat_map(|direction| ruleset.direction(*direction).policies.values())
            .map(|policy| 1 + policy_rule_count(policy))
            .sum::<usize>()
}

fn policy_rule_count(policy: &PolicyRules) -> usize {
    policy
        .rules
        .iter()
        .map(|rule| {
            let kinds = |some: bool| if some { 2 } else { 1 };
            kinds(rule.peers.is_some()) * kinds(rule.ports.is_some())
        })
        .sum()
}

pub fn table() -> Table<'static> {
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
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Forward),
        prio: Some(0),
        policy: Some(NfChainPolicy::Drop),
        ..chain("forward")
    }));
    // Both dispatch chains before any policy chain: egress policies go to `ingress`.
    for direction in DIRECTIONS {
        batch.add(NfListObject::Chain(chain(direction.as_str())));
    }
    for direction in DIRECTIONS {
        batch.add(set(
            &isolated_set(direction),
            vec![SetType::Ipv4Addr],
            false,
            addresses(ruleset.direction(direction).isolated.iter()),
        ));
        for (id, policy) in &ruleset.direction(direction).policies {
            add_policy(&mut batch, direction, id, policy);
        }
    }
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
    batch.add(rule(
        "forward",
        vec![
            matches(
                ip("saddr"),
                set_ref(&isolated_set(Direction::Egress)),
                Operator::EQ,
            ),
            Statement::Jump(JumpTarget {
                target: Direction::Egress.as_str().into(),
            }),
        ],
    ));
    batch.add(rule(
        "forward",
        vec![Statement::Jump(JumpTarget {
            target: Direction::Ingress.as_str().into(),
        })],
    ));
    add_dispatch(&mut batch, ruleset);
    batch.to_nftables()
}

/// The change from `old` (what the table holds) to `new`, in one batch: element deletions and
/// additions for the policies whose sets stay; a policy whose rules changed in kind has its
/// chain emptied and its rules and their sets written anew; policies added or removed get or
/// lose their chain and sets, and then the two dispatch chains are rewritten, since they jump
/// to them. Deletions come first, so that no
/// interval element is added while one it overlaps is still there.
pub fn render_update(old: &Ruleset, new: &Ruleset) -> Nftables<'static> {
    let mut deletions = Batch::new();
    let mut additions = Batch::new();
    let mut rebuild = false;
    for direction in DIRECTIONS {
        let (before, after) = (old.direction(direction), new.direction(direction));
        diff_elements(
            &mut deletions,
            &mut additions,
            &isolated_set(direction),
            &before.isolated,
            &after.isolated,
            |ip| text(ip.to_string()),
        );
        let ids: BTreeSet<&String> = before
            .policies
            .keys()
            .chain(after.policies.keys())
            .collect();
        for id in ids {
            match (before.policies.get(id), after.policies.get(id)) {
                (Some(was), Some(now)) => {
                    change_policy(&mut deletions, &mut additions, direction, id, was, now);
                }
                (was, now) => {
                    rebuild = true;
                    if let Some(was) = was {
                        remove_policy(&mut deletions, direction, id, was);
                    }
                    if let Some(now) = now {
                        add_policy(&mut additions, direction, id, now);
                    }
                }
            }
        }
    }
    let mut objects = Vec::new();
    if rebuild {
        // The dispatch rules jump to the chains being deleted: they go first and come back last.
        let mut flush = Batch::new();
        for direction in DIRECTIONS {
            flush.add_cmd(NfCmd::Flush(FlushObject::Chain(chain(direction.as_str()))));
        }
        add_dispatch(&mut additions, new);
        objects.extend(flush.to_nftables().objects.into_owned());
    }
    objects.extend(deletions.to_nftables().objects.into_owned());
    objects.extend(additions.to_nftables().objects.into_owned());
    Nftables {
        objects: objects.into(),
    }
}

/// The rules of the egress and ingress chains: one jump per policy, the log and the drop.
fn add_dispatch(batch: &mut Batch<'static>, ruleset: &Ruleset) {
    for direction in DIRECTIONS {
        let chain_name = direction.as_str();
        if direction == Direction::Ingress {
            batch.add(rule(
                chain_name,
                vec![
                    matches(
                        ip("daddr"),
                        set_ref(&isolated_set(direction)),
                        Operator::NEQ,
                    ),
                    Statement::Accept(None),
                ],
            ));
        }
        for id in ruleset.direction(direction).policies.keys() {
            batch.add(rule(
                chain_name,
                vec![
                    matches(
                        ip(pod_end(direction)),
                        set_ref(&policy_set(direction, id, "t")),
                        Operator::EQ,
                    ),
                    Statement::Jump(JumpTarget {
                        target: policy_chain(direction, id).into(),
                    }),
                ],
            ));
        }
        batch.add(rule(
            chain_name,
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
                    prefix: Some(format!("{TABLE} {chain_name} ").into()),
                    ..Log::new(Some(LOG_GROUP))
                })),
            ],
        ));
        batch.add(rule(chain_name, vec![Statement::Drop(None)]));
    }
}

/// One policy's targets set, chain, and its rules with their sets.
fn add_policy(batch: &mut Batch<'static>, direction: Direction, id: &str, policy: &PolicyRules) {
    batch.add(set(
        &policy_set(direction, id, "t"),
        vec![SetType::Ipv4Addr],
        false,
        addresses(policy.targets.iter()),
    ));
    batch.add(NfListObject::Chain(chain(&policy_chain(direction, id))));
    add_rules(batch, direction, id, policy);
}

/// A policy's rules, and the sets they match on (each with its elements): one nft rule per
/// kind of peer (pods, blocks) and kind of port (numeric, named) a rule has.
fn add_rules(batch: &mut Batch<'static>, direction: Direction, id: &str, policy: &PolicyRules) {
    let chain_name = policy_chain(direction, id);
    let allowed = || match direction {
        // Allowed on the way out: the destination's ingress is checked next.
        Direction::Egress => Statement::Goto(JumpTarget {
            target: Direction::Ingress.as_str().into(),
        }),
        Direction::Ingress => Statement::Accept(None),
    };
    let peer_end = match direction {
        Direction::Egress => "daddr",
        Direction::Ingress => "saddr",
    };
    for (index, rule_sets) in policy.rules.iter().enumerate() {
        let peer_matches: Vec<Vec<Statement<'static>>> = match &rule_sets.peers {
            None => vec![vec![]],
            Some(peers) => {
                let mut add = |kind, interval, elements| {
                    let name = rule_set(direction, id, index, kind);
                    batch.add(set(&name, vec![SetType::Ipv4Addr], interval, elements));
                    vec![matches(ip(peer_end), set_ref(&name), Operator::EQ)]
                };
                vec![
                    add("pods", false, addresses(peers.pods.iter())),
                    add("blocks", true, ranges(peers.blocks.iter())),
                ]
            }
        };
        let port_matches: Vec<Vec<Statement<'static>>> = match &rule_sets.ports {
            None => vec![vec![]],
            Some(ports) => {
                let mut add = |kind, types, interval, elements, key| {
                    let name = rule_set(direction, id, index, kind);
                    batch.add(set(&name, types, interval, elements));
                    vec![matches(concat(key), set_ref(&name), Operator::EQ)]
                };
                vec![
                    add(
                        "ports",
                        vec![SetType::InetProto, SetType::InetService],
                        true,
                        numeric_ports(ports.numeric.iter()),
                        vec![meta(MetaKey::L4proto), payload("th", "dport")],
                    ),
                    add(
                        "named",
                        vec![SetType::Ipv4Addr, SetType::InetProto, SetType::InetService],
                        false,
                        named_ports(ports.named.iter()),
                        vec![ip("daddr"), meta(MetaKey::L4proto), payload("th", "dport")],
                    ),
                ]
            }
        };
        for peer_match in &peer_matches {
            for port_match in &port_matches {
                batch.add(rule(
                    &chain_name,
                    [peer_match.clone(), port_match.clone(), vec![allowed()]].concat(),
                ));
            }
        }
    }
}

/// The sets of a policy's rules (its targets set stays).
fn remove_rule_sets(
    batch: &mut Batch<'static>,
    direction: Direction,
    id: &str,
    policy: &PolicyRules,
) {
    for (index, rule_sets) in policy.rules.iter().enumerate() {
        let mut kinds = Vec::new();
        if rule_sets.peers.is_some() {
            kinds.extend(["pods", "blocks"]);
        }
        if rule_sets.ports.is_some() {
            kinds.extend(["ports", "named"]);
        }
        for kind in kinds {
            delete_set(batch, &rule_set(direction, id, index, kind));
        }
    }
}

/// One policy's chain (emptied first: a chain with rules cannot be deleted) and sets.
fn remove_policy(batch: &mut Batch<'static>, direction: Direction, id: &str, policy: &PolicyRules) {
    let chain_name = policy_chain(direction, id);
    batch.add_cmd(NfCmd::Flush(FlushObject::Chain(chain(&chain_name))));
    batch.delete(NfListObject::Chain(chain(&chain_name)));
    remove_rule_sets(batch, direction, id, policy);
    delete_set(batch, &policy_set(direction, id, "t"));
}

/// A delete names the set only; nft ignores the type given with it.
fn delete_set(batch: &mut Batch<'static>, name: &str) {
    batch.delete(set(name, vec![SetType::Ipv4Addr], false, Vec::new()));
}

/// A policy that stays: the element changes of its sets; when its rules changed in kind, its
/// chain is emptied and its rules and their sets written anew (the chain stays, and with it the
/// dispatch rule jumping to it).
fn change_policy(
    deletions: &mut Batch<'static>,
    additions: &mut Batch<'static>,
    direction: Direction,
    id: &str,
    was: &PolicyRules,
    now: &PolicyRules,
) {
    diff_elements(
        deletions,
        additions,
        &policy_set(direction, id, "t"),
        &was.targets,
        &now.targets,
        |ip| text(ip.to_string()),
    );
    if was.shape() != now.shape() {
        deletions.add_cmd(NfCmd::Flush(FlushObject::Chain(chain(&policy_chain(
            direction, id,
        )))));
        remove_rule_sets(deletions, direction, id, was);
        add_rules(additions, direction, id, now);
        return;
    }
    for (index, (before, after)) in was.rules.iter().zip(&now.rules).enumerate() {
        if let (Some(before), Some(after)) = (&before.peers, &after.peers) {
            diff_elements(
                deletions,
                additions,
                &rule_set(direction, id, index, "pods"),
                &before.pods,
                &after.pods,
                |ip| text(ip.to_string()),
            );
            diff_elements(
                deletions,
                additions,
                &rule_set(direction, id, index, "blocks"),
                &before.blocks.iter().copied().collect(),
                &after.blocks.iter().copied().collect(),
                ip_range,
            );
        }
        if let (Some(before), Some(after)) = (&before.ports, &after.ports) {
            diff_elements(
                deletions,
                additions,
                &rule_set(direction, id, index, "ports"),
                &before.numeric.iter().copied().collect(),
                &after.numeric.iter().copied().collect(),
                numeric_port,
            );
            diff_elements(
                deletions,
                additions,
                &rule_set(direction, id, index, "named"),
                &before.named,
                &after.named,
                named_port,
            );
        }
    }
}

fn diff_elements<T: Ord + Copy>(
    deletions: &mut Batch<'static>,
    additions: &mut Batch<'static>,
    set_name: &str,
    before: &BTreeSet<T>,
    after: &BTreeSet<T>,
    render: impl Fn(T) -> Expression<'static>,
) {
    let element = |elem: Vec<Expression<'static>>| {
        NfListObject::Element(Element {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: set_name.to_string().into(),
            elem: elem.into(),
        })
    };
    let gone: Vec<_> = before.difference(after).map(|e| render(*e)).collect();
    let added: Vec<_> = after.difference(before).map(|e| render(*e)).collect();
    if !gone.is_empty() {
        deletions.delete(element(gone));
    }
    if !added.is_empty() {
        additions.add(element(added));
    }
}

fn pod_end(direction: Direction) -> &'static str {
    match direction {
        Direction::Egress => "saddr",
        Direction::Ingress => "daddr",
    }
}

fn isolated_set(direction: Direction) -> String {
    format!("{}_isolated", direction.as_str())
}

fn policy_chain(direction: Direction, id: &str) -> String {
    format!("{}-{id}", direction.as_str())
}

/// `i-<id>-<suffix>` or `e-…`: at most 31 bytes with a rule index below 1,000.
fn policy_set(direction: Direction, id: &str, suffix: &str) -> String {
    format!("{}-{id}-{suffix}", &direction.as_str()[..1])
}

fn rule_set(direction: Direction, id: &str, index: usize, suffix: &str) -> String {
    policy_set(direction, id, &format!("{index}-{suffix}"))
}

#[cfg(test)]
mod tests;
