//! The building blocks of `render`'s nftables JSON: chains, rules, sets and their elements, and
//! the expressions rules are made of, all in the table `inet weft-npc`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;

use nftables::expr::{
    CT, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Range,
};
use nftables::schema::{Chain, NfListObject, Rule, Set, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::NfFamily;

use super::TABLE;
use crate::npc::ranges::IpRange;
use crate::npc::ruleset::{NamedPort, ProtocolPorts};

pub(super) fn chain(name: &str) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.to_string().into(),
        ..Chain::default()
    }
}

pub(super) fn rule(chain: &str, expr: Vec<Statement<'static>>) -> NfListObject<'static> {
    NfListObject::Rule(Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.to_string().into(),
        expr: expr.into(),
        handle: None,
        index: None,
        comment: None,
    })
}

pub(super) fn set(
    name: &str,
    types: Vec<SetType>,
    interval: bool,
    elements: Vec<Expression<'static>>,
) -> NfListObject<'static> {
    NfListObject::Set(Box::new(Set {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.to_string().into(),
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
}

pub(super) fn addresses<'a>(pods: impl Iterator<Item = &'a Ipv4Addr>) -> Vec<Expression<'static>> {
    pods.map(|ip| text(ip.to_string())).collect()
}

pub(super) fn ranges<'a>(ranges: impl Iterator<Item = &'a IpRange>) -> Vec<Expression<'static>> {
    ranges.copied().map(ip_range).collect()
}

pub(super) fn numeric_ports<'a>(
    ports: impl Iterator<Item = &'a ProtocolPorts>,
) -> Vec<Expression<'static>> {
    ports.copied().map(numeric_port).collect()
}

pub(super) fn named_ports<'a>(
    ports: impl Iterator<Item = &'a NamedPort>,
) -> Vec<Expression<'static>> {
    ports.copied().map(named_port).collect()
}

pub(super) fn numeric_port(element: ProtocolPorts) -> Expression<'static> {
    let ports = if element.ports.first == element.ports.last {
        Expression::Number(u32::from(element.ports.first))
    } else {
        range(
            Expression::Number(u32::from(element.ports.first)),
            Expression::Number(u32::from(element.ports.last)),
        )
    };
    concat(vec![text(element.protocol.as_str()), ports])
}

pub(super) fn named_port(element: NamedPort) -> Expression<'static> {
    concat(vec![
        text(element.dst.to_string()),
        text(element.protocol.as_str()),
        Expression::Number(u32::from(element.port)),
    ])
}

pub(super) fn set_ref(name: &str) -> Expression<'static> {
    text(format!("@{name}"))
}

pub(super) fn text(value: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(value.into())
}

pub(super) fn range(first: Expression<'static>, last: Expression<'static>) -> Expression<'static> {
    Expression::Range(Box::new(Range {
        range: [first, last],
    }))
}

pub(super) fn ip_range(peer: IpRange) -> Expression<'static> {
    if peer.first == peer.last {
        text(peer.first_addr().to_string())
    } else {
        range(
            text(peer.first_addr().to_string()),
            text(peer.last_addr().to_string()),
        )
    }
}

pub(super) fn concat(parts: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(parts))
}

pub(super) fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

pub(super) fn ip(field: &'static str) -> Expression<'static> {
    payload("ip", field)
}

pub(super) fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

pub(super) fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

pub(super) fn matches(
    left: Expression<'static>,
    right: Expression<'static>,
    op: Operator,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}
