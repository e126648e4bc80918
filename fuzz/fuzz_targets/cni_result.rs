//! Fuzz target: a CNI result from another plugin (a `prevResult` in a chain, or a delegated IPAM
//! plugin's answer), read by [`CniResult::from_json`] from any JSON.
//!
//! Properties: a result that reads, written in every spec version we speak, reads back the same
//! (less the interface MTUs a version before 1.1.0 cannot carry); chaining our result after it
//! keeps both and moves our interface indices past its interfaces.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use weave_net_cni::result::{CniResult, Interface, IpConfig};
use weave_net_cni::version::{SUPPORTED, Version};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(result) = CniResult::from_json("prevResult", &json) else {
        return;
    };
    for text in SUPPORTED {
        let version = Version::parse(text).expect("a supported version parses");
        let read = CniResult::from_json("prevResult", &result.to_json(version))
            .expect("a written result reads");
        let mut expected = result.clone();
        if !version.interfaces_carry_mtu() {
            for interface in &mut expected.interfaces {
                interface.mtu = None;
            }
        }
        assert_eq!(read, expected, "round trip through {text}");
    }
    for ip in &result.ips {
        let _ = ip.ipv4();
    }
    let ours = CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            ..Interface::default()
        }],
        ips: vec![IpConfig {
            address: "10.32.0.2/12".into(),
            gateway: None,
            interface: Some(0),
        }],
        routes: Vec::new(),
        dns: None,
    };
    let chained = result.clone().chain(ours);
    assert_eq!(chained.interfaces.len(), result.interfaces.len() + 1);
    assert_eq!(chained.ips.len(), result.ips.len() + 1);
    assert_eq!(
        chained.ips.last().and_then(|ip| ip.interface),
        Some(result.interfaces.len())
    );
});
