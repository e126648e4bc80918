//! [`CniResult`]: what ADD returns (interfaces, addresses, routes, DNS), read from any
//! supported version (a `prevResult`, a delegated IPAM plugin's answer) and written in the
//! shape of the config's version. Addresses stay text, so entries of other plugins (IPv6
//! included) pass through a chain unchanged.

use std::net::Ipv4Addr;

use serde_json::{Map, Value, json};

use crate::error::CniError;
use crate::version::Version;

/// One entry of `interfaces`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// MTU in bytes (written from 1.1.0 on).
    pub mtu: Option<u32>,
    /// The namespace path, for interfaces inside the container.
    pub sandbox: Option<String>,
}

/// One entry of `ips`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// `ADDRESS/PREFIX`.
    pub address: String,
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

/// One entry of `routes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `NETWORK/PREFIX`.
    pub dst: String,
    pub gw: Option<String>,
}

/// A CNI result, version-neutral.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Option<Value>,
}

impl IpConfig {
    /// The address as IPv4 address and prefix length, when it is one.
    pub fn ipv4(&self) -> Option<(Ipv4Addr, u8)> {
        parse_ipv4_cidr(&self.address)
    }
}

/// `a.b.c.d/n` as address and prefix length.
pub fn parse_ipv4_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (address, prefix) = text.trim().split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((address.parse().ok()?, prefix))
}

impl CniResult {
    /// The result JSON for `version`.
    pub fn to_json(&self, version: Version) -> Value {
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|interface| {
                let mut entry = Map::new();
                entry.insert("name".into(), json!(interface.name));
                if let Some(mac) = &interface.mac {
                    entry.insert("mac".into(), json!(mac));
                }
                if let (Some(mtu), true) = (interface.mtu, version.interfaces_carry_mtu()) {
                    entry.insert("mtu".into(), json!(mtu));
                }
                if let Some(sandbox) = &interface.sandbox {
                    entry.insert("sandbox".into(), json!(sandbox));
                }
                Value::Object(entry)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut entry = Map::new();
                if version.ips_carry_version() {
                    let family = if ip.address.contains(':') { "6" } else { "4" };
                    entry.insert("version".into(), json!(family));
                }
                entry.insert("address".into(), json!(ip.address));
                if let Some(gateway) = &ip.gateway {
                    entry.insert("gateway".into(), json!(gateway));
                }
                if let Some(interface) = ip.interface {
                    entry.insert("interface".into(), json!(interface));
                }
                Value::Object(entry)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|route| {
                let mut entry = Map::new();
                entry.insert("dst".into(), json!(route.dst));
                if let Some(gw) = &route.gw {
                    entry.insert("gw".into(), json!(gw));
                }
                Value::Object(entry)
            })
            .collect();
        let mut result = Map::new();
        result.insert("cniVersion".into(), json!(version.as_str()));
        result.insert("interfaces".into(), Value::Array(interfaces));
        result.insert("ips".into(), Value::Array(ips));
        result.insert("routes".into(), Value::Array(routes));
        if let Some(dns) = &self.dns {
            result.insert("dns".into(), dns.clone());
        }
        Value::Object(result)
    }

    /// Reads a result of any supported version (0.3.0 and later layouts; the `version` field
    /// of older `ips` entries is ignored). `what` names it in errors ("prevResult").
    pub fn from_json(what: &str, value: &Value) -> Result<Self, CniError> {
        let invalid = |detail: String| CniError::InvalidConfig(format!("{what}: {detail}"));
        let object = value
            .as_object()
            .ok_or_else(|| invalid("not a JSON object".into()))?;
        let list = |key: &str| -> Result<Vec<Value>, CniError> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(_) => Err(invalid(format!("{key} is not a list"))),
            }
        };
        let text =
            |entry: &Value, key: &str| entry.get(key).and_then(Value::as_str).map(String::from);
        let mut result = CniResult::default();
        for entry in list("interfaces")? {
            result.interfaces.push(Interface {
                name: text(&entry, "name")
                    .ok_or_else(|| invalid("an interface without a name".into()))?,
                mac: text(&entry, "mac"),
                mtu: entry
                    .get("mtu")
                    .and_then(Value::as_u64)
                    .and_then(|m| u32::try_from(m).ok()),
                sandbox: text(&entry, "sandbox"),
            });
        }
        for entry in list("ips")? {
            result.ips.push(IpConfig {
                address: text(&entry, "address")
                    .ok_or_else(|| invalid("an ips entry without an address".into()))?,
                gateway: text(&entry, "gateway"),
                interface: entry
                    .get("interface")
                    .and_then(Value::as_u64)
                    .and_then(|i| usize::try_from(i).ok()),
            });
        }
        for entry in list("routes")? {
            result.routes.push(Route {
                dst: text(&entry, "dst").ok_or_else(|| invalid("a route without dst".into()))?,
                gw: text(&entry, "gw"),
            });
        }
        result.dns = object.get("dns").filter(|dns| !dns.is_null()).cloned();
        Ok(result)
    }

    /// Appends `ours` after this (a previous plugin's) result, moving our `interface` indices
    /// past the interfaces already listed.
    pub fn chain(mut self, ours: CniResult) -> CniResult {
        let offset = self.interfaces.len();
        self.interfaces.extend(ours.interfaces);
        self.ips.extend(ours.ips.into_iter().map(|ip| IpConfig {
            interface: ip.interface.map(|i| i + offset),
            ..ip
        }));
        self.routes.extend(ours.routes);
        if ours.dns.is_some() {
            self.dns = ours.dns;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "vethwepl0123456".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    mtu: Some(1450),
                    sandbox: None,
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:02".into()),
                    mtu: Some(1450),
                    sandbox: Some("/var/run/netns/p".into()),
                },
            ],
            ips: vec![IpConfig {
                address: "10.32.0.5/12".into(),
                gateway: Some("10.32.0.1".into()),
                interface: Some(1),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("10.32.0.1".into()),
            }],
            dns: Some(json!({"nameservers": ["10.96.0.10"]})),
        }
    }

    #[test]
    fn old_versions_name_the_ip_family_new_ones_do_not() {
        let old = sample().to_json(Version::V031);
        assert_eq!(old["cniVersion"], "0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert!(old["interfaces"][1].get("mtu").is_none());
        let new = sample().to_json(Version::V100);
        assert!(new["ips"][0].get("version").is_none());
        assert!(new["interfaces"][1].get("mtu").is_none());
        let newest = sample().to_json(Version::V110);
        assert_eq!(newest["interfaces"][1]["mtu"], 1450);
        assert_eq!(newest["ips"][0]["interface"], 1);
        assert_eq!(newest["dns"]["nameservers"][0], "10.96.0.10");
    }

    #[test]
    fn results_read_back_from_every_version() {
        for version in [Version::V030, Version::V040, Version::V110] {
            let back = CniResult::from_json("r", &sample().to_json(version)).expect("parses");
            assert_eq!(back.ips, sample().ips);
            assert_eq!(back.routes, sample().routes);
        }
        assert!(CniResult::from_json("r", &json!({"ips": 3})).is_err());
    }

    #[test]
    fn chaining_shifts_interface_indices() {
        let mut previous = sample();
        previous.dns = None;
        let chained = previous.clone().chain(sample());
        assert_eq!(chained.interfaces.len(), 4);
        assert_eq!(chained.ips[1].interface, Some(3));
        assert_eq!(chained.ips[0].interface, Some(1));
    }

    #[test]
    fn cidrs_parse() {
        assert_eq!(
            parse_ipv4_cidr("10.32.0.5/12"),
            Some((Ipv4Addr::new(10, 32, 0, 5), 12))
        );
        assert_eq!(parse_ipv4_cidr("10.32.0.5"), None);
        assert_eq!(parse_ipv4_cidr("fd00::1/64"), None);
        assert_eq!(parse_ipv4_cidr("10.32.0.5/33"), None);
    }
}
