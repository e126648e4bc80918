//! The `weave-net` CNI plugin (kubelet's side of Weft). For now it answers `VERSION`; the other
//! commands (ADD, DEL, CHECK, STATUS, GC) come with the CNI issue and until then fail with a CNI
//! error that says so, rather than pretending to have wired a pod.

use std::io::Write;
use std::process::ExitCode;

/// CNI spec versions this plugin will speak.
const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// CNI error code for a plugin-specific failure (codes 100+ are the plugin's own).
const NOT_AVAILABLE_CODE: u32 = 100;

/// The JSON answer to `CNI_COMMAND` and whether it is a success.
fn respond(command: Option<&str>) -> (serde_json::Value, bool) {
    match command {
        Some("VERSION") => (
            serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": SUPPORTED_VERSIONS,
            }),
            true,
        ),
        other => {
            let msg = match other {
                None | Some("") => "CNI_COMMAND is not set".to_string(),
                Some(command) => {
                    format!("CNI_COMMAND {command} is not available in this build of weave-net yet")
                }
            };
            (
                serde_json::json!({
                    "cniVersion": "1.1.0",
                    "code": NOT_AVAILABLE_CODE,
                    "msg": msg,
                }),
                false,
            )
        }
    }
}

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").ok();
    let (answer, ok) = respond(command.as_deref());
    let _ = writeln!(std::io::stdout(), "{answer}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists_the_supported_spec_versions() {
        let (answer, ok) = respond(Some("VERSION"));
        assert!(ok);
        assert_eq!(answer["supportedVersions"][4], "1.1.0");
    }

    #[test]
    fn other_commands_fail_with_a_cni_error_that_says_why() {
        let (answer, ok) = respond(Some("ADD"));
        assert!(!ok);
        assert_eq!(answer["code"], NOT_AVAILABLE_CODE);
        assert!(answer["msg"].as_str().unwrap().contains("ADD"));
        let (answer, _) = respond(None);
        assert!(answer["msg"].as_str().unwrap().contains("not set"));
    }
}
