//! The fastdp VXLAN device's settings as the kernel reports them, checked against the
//! configuration when an existing device is adopted.

use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage};

use crate::dataplane::error::{DataplaneError, Result};
use crate::dataplane::link::VxlanConfig;

/// An adopted VXLAN device must match what is configured: VNI, port and learning can't be
/// changed on a live device without disturbing traffic, so a difference is the operator's call.
pub(super) fn check_vxlan(message: &LinkMessage, config: &VxlanConfig) -> Result<()> {
    let mismatch = |setting, expected: String, found: String| DataplaneError::Mismatch {
        name: config.name.clone(),
        setting,
        expected,
        found,
    };
    let infos = message
        .attributes
        .iter()
        .filter_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        });
    for info in infos.flatten() {
        let LinkInfo::Data(InfoData::Vxlan(settings)) = info else {
            continue;
        };
        for setting in settings {
            match *setting {
                InfoVxlan::Id(vni) if vni != config.vni => {
                    return Err(mismatch("VNI", config.vni.to_string(), vni.to_string()));
                }
                InfoVxlan::Port(port) if port != config.port => {
                    return Err(mismatch(
                        "UDP port",
                        config.port.to_string(),
                        port.to_string(),
                    ));
                }
                InfoVxlan::Local(local) if config.local.is_some_and(|want| want != local) => {
                    let want = config
                        .local
                        .map_or_else(String::new, |want| want.to_string());
                    return Err(mismatch("local address", want, local.to_string()));
                }
                InfoVxlan::Learning(learning) if learning != config.learning => {
                    let show = |on: bool| if on { "learning" } else { "nolearning" }.to_string();
                    return Err(mismatch("setting", show(config.learning), show(learning)));
                }
                _ => {}
            }
        }
    }
    Ok(())
}
