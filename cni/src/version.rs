//! The CNI spec versions we speak, and the answer to `VERSION`.

use crate::error::CniError;

/// Spec versions this plugin speaks, oldest first. 0.3.0 is the first with the `interfaces`
/// result layout; CHECK came with 0.4.0, STATUS and GC with 1.1.0.
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest version, used for answers when the config names none we can trust.
pub const LATEST: &str = "1.1.0";

/// A spec version we speak, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V030,
    V031,
    V040,
    V100,
    V110,
}

impl Version {
    /// Parses a config's `cniVersion`.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        Ok(match text {
            "0.3.0" => Version::V030,
            "0.3.1" => Version::V031,
            "0.4.0" => Version::V040,
            "1.0.0" => Version::V100,
            "1.1.0" => Version::V110,
            other => {
                return Err(CniError::IncompatibleVersion {
                    version: other.to_string(),
                });
            }
        })
    }

    /// The version as the spec writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V030 => "0.3.0",
            Version::V031 => "0.3.1",
            Version::V040 => "0.4.0",
            Version::V100 => "1.0.0",
            Version::V110 => "1.1.0",
        }
    }

    /// Before 1.0.0, each `ips` entry names its IP version ("4"/"6").
    pub fn ips_carry_version(self) -> bool {
        self < Version::V100
    }

    /// Interface MTU in results came with 1.1.0.
    pub fn interfaces_carry_mtu(self) -> bool {
        self >= Version::V110
    }

    /// CHECK exists from 0.4.0 on.
    pub fn has_check(self) -> bool {
        self >= Version::V040
    }

    /// STATUS and GC exist from 1.1.0 on.
    pub fn has_status_and_gc(self) -> bool {
        self >= Version::V110
    }
}

/// The answer to `VERSION`.
pub fn version_info(requested: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "cniVersion": requested.filter(|v| SUPPORTED.contains(v)).unwrap_or(LATEST),
        "supportedVersions": SUPPORTED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_parses_and_prints_back() {
        for text in SUPPORTED {
            assert_eq!(Version::parse(text).expect(text).as_str(), text);
        }
        assert_eq!(Version::parse("0.2.0").expect_err("old").code(), 1);
        assert_eq!(LATEST, SUPPORTED[SUPPORTED.len() - 1]);
    }

    #[test]
    fn version_answer_lists_all_and_echoes_a_known_request() {
        let answer = version_info(Some("0.4.0"));
        assert_eq!(answer["cniVersion"], "0.4.0");
        assert_eq!(
            answer["supportedVersions"].as_array().expect("list").len(),
            5
        );
        assert_eq!(version_info(Some("9.9.9"))["cniVersion"], LATEST);
    }
}
