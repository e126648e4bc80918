//! Fuzz target: the network configuration the container runtime hands the CNI plugin on stdin,
//! parsed and checked by [`NetConf::parse`] (with its `prevResult`), and the best-effort
//! `cniVersion` read from a config that failed ([`version_hint`]).
//!
//! Properties: a config that parses names its version where `version_hint` finds it; its MTU is
//! within bounds; its `prevResult`, written back in the config's version, reads back the same
//! (less the interface MTUs a version before 1.1.0 cannot carry).

#![no_main]

use libfuzzer_sys::fuzz_target;
use weave_net_cni::config::{NetConf, version_hint};
use weave_net_cni::result::CniResult;
use weft::dataplane::link::MIN_OVERLAY_MTU_BYTES;

fuzz_target!(|data: &[u8]| {
    let hint = version_hint(data);
    let Ok(conf) = NetConf::parse(data) else {
        return;
    };
    assert_eq!(hint.as_deref(), Some(conf.version.as_str()));
    assert!(
        conf.mtu
            .is_none_or(|mtu| (MIN_OVERLAY_MTU_BYTES..=65_535).contains(&mtu))
    );
    let _ = conf.delegate();
    if let Some(prev) = &conf.prev_result {
        let written = prev.to_json(conf.version);
        let read = CniResult::from_json("prevResult", &written).expect("a written result reads");
        let mut expected = prev.clone();
        if !conf.version.interfaces_carry_mtu() {
            for interface in &mut expected.interfaces {
                interface.mtu = None;
            }
        }
        assert_eq!(read, expected);
    }
});
