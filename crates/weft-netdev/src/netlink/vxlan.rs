//! The fastdp VXLAN device's settings as the kernel reports them, checked against the
//! configuration when an existing device is adopted.

use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage, VxlanDf,
};

use crate::error::{DataplaneError, Result};
use crate::link::VxlanConfig;

/// The kernel's DF setting for "don't fragment" on or off (off: the kernel's default, unset).
pub(super) fn df_setting(df: bool) -> VxlanDf {
    if df { VxlanDf::Set } else { VxlanDf::Unset }
}

/// The changelink message that brings an adopted device's learning and DF settings to the
/// configuration, or `None` when they already match.
pub(super) fn vxlan_changes(message: &LinkMessage, config: &VxlanConfig) -> Option<LinkMessage> {
    let mut learning = None;
    // A kernel that does not report DF (before 5.7) has none to set either.
    let mut df = None;
    for setting in vxlan_settings(message) {
        match setting {
            InfoVxlan::Learning(on) => learning = Some(*on),
            InfoVxlan::Df(value) => df = Some(*value),
            _ => {}
        }
    }
    let want_df = df_setting(config.df);
    let learning_ok = learning.is_none_or(|on| on == config.learning);
    let df_ok = df.is_none_or(|value| value == want_df);
    if learning_ok && df_ok {
        return None;
    }
    let mut change = LinkMessage::default();
    change.header.index = message.header.index;
    let mut data = vec![InfoVxlan::Learning(config.learning)];
    if df.is_some() {
        data.push(InfoVxlan::Df(want_df));
    }
    change.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Vxlan),
        LinkInfo::Data(InfoData::Vxlan(data)),
    ]));
    Some(change)
}

fn vxlan_settings(message: &LinkMessage) -> impl Iterator<Item = &InfoVxlan> {
    message
        .attributes
        .iter()
        .filter_map(|attribute| match attribute {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })
        .flatten()
        .filter_map(|info| match info {
            LinkInfo::Data(InfoData::Vxlan(settings)) => Some(settings),
            _ => None,
        })
        .flatten()
}

/// An adopted VXLAN device must match what is configured: VNI, port and local address can't be
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
                _ => {}
            }
        }
    }
    Ok(())
}
