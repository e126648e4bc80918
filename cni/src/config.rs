//! [`NetConf`]: the network configuration the runtime passes on stdin, parsed and validated
//! (bridge, MTU, hairpin mode, IPAM delegation, DNS, `prevResult`, GC's valid attachments).

use serde::Deserialize;
use serde_json::Value;
use weft_client::{IPAM_PLUGIN_NAME, PLUGIN_NAME};
use weft_netdev::attach::DEFAULT_BRIDGE;
use weft_netdev::attach::ifname_problem;
use weft_netdev::link::MIN_OVERLAY_MTU_BYTES;

use crate::error::CniError;
use crate::result::CniResult;
use crate::version::Version;

/// The largest MTU we accept, in bytes: the IPv4 maximum datagram size (RFC 791's 16-bit total
/// length).
const MAX_MTU_BYTES: u32 = 65_535;

/// The `ipam` section. Only `type` matters to us: with it set, another IPAM plugin (found in
/// `CNI_PATH`) gives the addresses; without it the router does.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct IpamConf {
    #[serde(rename = "type")]
    pub plugin: Option<String>,
    /// IPAM-only mode (`weave-ipam`): allocate in this subnet rather than the default one.
    pub subnet: Option<String>,
    /// IPAM-only mode: the gateway to report with the address.
    pub gateway: Option<String>,
    /// IPAM-only mode: routes to report with the address.
    #[serde(default)]
    pub routes: Vec<RouteConf>,
}

/// A route of the `ipam` section.
#[derive(Clone, Debug, Deserialize)]
pub struct RouteConf {
    pub dst: String,
    pub gw: Option<String>,
}

/// One live attachment GC must keep.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// What the config says, as given (see [`NetConf`] for the checked form).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConf {
    cni_version: Option<String>,
    name: Option<String>,
    bridge: Option<String>,
    mtu: Option<u32>,
    hairpin_mode: Option<bool>,
    ipam: Option<IpamConf>,
    dns: Option<Value>,
    prev_result: Option<Value>,
    #[serde(rename = "cni.dev/valid-attachments")]
    valid_attachments: Option<Vec<ValidAttachment>>,
}

/// The checked network configuration.
#[derive(Debug)]
pub struct NetConf {
    pub version: Version,
    /// The bridge pods hang off ([`DEFAULT_BRIDGE`]).
    pub bridge: String,
    /// MTU in bytes for the pod's veth; `None` for the bridge's.
    pub mtu: Option<u32>,
    /// Hairpin mode on the host port (default on, so a pod reaches itself via a service).
    pub hairpin: bool,
    pub ipam: IpamConf,
    pub dns: Option<Value>,
    pub prev_result: Option<CniResult>,
    pub valid_attachments: Vec<ValidAttachment>,
}

impl NetConf {
    /// Parses and checks the config bytes: not JSON is code 6, a missing or wrong field code 7,
    /// an unsupported `cniVersion` code 1.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let raw: RawConf = serde_json::from_slice(bytes).map_err(|source| {
            if source.is_data() {
                CniError::InvalidConfig(source.to_string())
            } else {
                CniError::Decode {
                    what: "the network configuration on stdin",
                    source,
                }
            }
        })?;
        let version = raw
            .cni_version
            .ok_or_else(|| CniError::InvalidConfig("cniVersion is missing".into()))?;
        let version = Version::parse(&version)?;
        // Required by the spec; the runtime keys its own state by it, we need nothing from it.
        if raw.name.is_none_or(|name| name.is_empty()) {
            return Err(CniError::InvalidConfig("name is missing".into()));
        }
        let bridge = raw.bridge.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        if let Some(problem) = ifname_problem(&bridge) {
            return Err(CniError::InvalidConfig(format!(
                "bridge {bridge:?}: {problem}"
            )));
        }
        if let Some(mtu) = raw.mtu
            && !(MIN_OVERLAY_MTU_BYTES..=MAX_MTU_BYTES).contains(&mtu)
        {
            return Err(CniError::InvalidConfig(format!(
                "mtu {mtu} is outside {MIN_OVERLAY_MTU_BYTES}..={MAX_MTU_BYTES}"
            )));
        }
        let ipam = raw.ipam.unwrap_or_default();
        if ipam
            .plugin
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.contains('/'))
        {
            return Err(CniError::InvalidConfig(
                "ipam.type must name a plugin binary in CNI_PATH, not a path".into(),
            ));
        }
        let prev_result = raw
            .prev_result
            .filter(|prev| !prev.is_null())
            .map(|prev| CniResult::from_json("prevResult", &prev))
            .transpose()?;
        Ok(NetConf {
            version,
            bridge,
            mtu: raw.mtu,
            hairpin: raw.hairpin_mode.unwrap_or(true),
            ipam,
            dns: raw.dns.filter(|dns| !dns.is_null()),
            prev_result,
            valid_attachments: raw.valid_attachments.unwrap_or_default(),
        })
    }

    /// The IPAM plugin ADD delegates to, when `ipam.type` names one (and it isn't us).
    pub fn delegate(&self) -> Option<&str> {
        self.ipam
            .plugin
            .as_deref()
            .filter(|plugin| ![PLUGIN_NAME, IPAM_PLUGIN_NAME].contains(plugin))
    }
}

/// Best-effort `cniVersion` of a config we could not parse, for the error answer (and the
/// version VERSION is asked about).
pub fn version_hint(bytes: &[u8]) -> Option<String> {
    /// Only the version, read as [`NetConf::parse`] reads the config: the other fields are
    /// skipped, and serde_json skips a string without checking its UTF-8. Reading the whole
    /// config as a `Value` refused such a config, which `parse` takes, so VERSION and early
    /// errors answered as if it named no version (found by fuzzing, `fuzz/`).
    #[derive(Deserialize)]
    struct Hint {
        #[serde(rename = "cniVersion")]
        cni_version: Option<Value>,
    }
    let hint: Hint = serde_json::from_slice(bytes).ok()?;
    hint.cni_version?.as_str().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_weaves() {
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"weave","type":"weave-net"}"#)
            .expect("valid");
        assert_eq!(conf.bridge, "weave");
        assert!(conf.hairpin);
        assert_eq!(conf.mtu, None);
        assert!(conf.delegate().is_none());
    }

    #[test]
    fn every_field_is_read() {
        let conf = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","bridge":"br0","mtu":1400,"hairpinMode":false,
                "ipam":{"type":"host-local"},"dns":{"nameservers":["10.0.0.10"]},
                "cni.dev/valid-attachments":[{"containerID":"abc","ifname":"eth0"}],
                "prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.32.0.2/12"}]}}"#,
        )
        .expect("valid");
        assert_eq!(conf.bridge, "br0");
        assert_eq!(conf.mtu, Some(1400));
        assert!(!conf.hairpin);
        assert_eq!(conf.delegate(), Some("host-local"));
        assert_eq!(conf.valid_attachments[0].container_id, "abc");
        assert_eq!(
            conf.prev_result.expect("prev").ips[0].address,
            "10.32.0.2/12"
        );
    }

    #[test]
    fn bad_configs_get_the_spec_codes() {
        let code = |text: &str| NetConf::parse(text.as_bytes()).expect_err(text).code();
        assert_eq!(code("{not json"), 6);
        assert_eq!(code(r#"{"name":"n"}"#), 7, "no cniVersion");
        assert_eq!(code(r#"{"cniVersion":"0.2.0","name":"n"}"#), 1);
        assert_eq!(code(r#"{"cniVersion":"1.0.0"}"#), 7, "no name");
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n","mtu":"big"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n","mtu":100}"#), 7);
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","bridge":"a/b"}"#),
            7
        );
        assert_eq!(
            code(r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"../x"}}"#),
            7
        );
        assert_eq!(
            version_hint(br#"{"cniVersion":"0.4.0","mtu":"x"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(version_hint(br#"{"cniVersion":4}"#), None);
        assert_eq!(version_hint(b"{not json"), None);
    }

    /// Found by the `cni_config` fuzz target: a byte that is not UTF-8 inside a field we ignore.
    /// `parse` skips the field unread and takes the config; the hint must name its version too.
    #[test]
    fn the_version_hint_reads_every_config_that_parses() {
        let config =
            b"{\"cniVersion\":\"0.3.1\",\"name\":\"weave\",\"type\":\"weave-n\xec\x90et\"}";
        let conf = NetConf::parse(config).expect("the unread field is skipped");
        assert_eq!(conf.version.as_str(), "0.3.1");
        assert_eq!(version_hint(config).as_deref(), Some("0.3.1"));
    }
}
