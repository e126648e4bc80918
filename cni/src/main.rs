//! The `weave-net` CNI plugin (kubelet's side of Weft). For now it answers `VERSION`; the other
//! commands (ADD, DEL, CHECK, STATUS, GC) come with the CNI issue and until then fail with a CNI
//! error that says so, rather than pretending to have wired a pod.

use std::io::Write;
use std::process::ExitCode;

/// CNI spec versions this plugin will speak.
const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// CNI error code for a plugin-specific failure (codes 100+ are the plugin's own).
const NOT_AVAILABLE_CODE: u32 = 100;

fn main() -> ExitCode {
    let command = std::env::var("CNI_COMMAND").unwrap_or_default();
    let mut stdout = std::io::stdout();
    match command.as_str() {
        "VERSION" => {
            let answer = serde_json::json!({
                "cniVersion": "1.1.0",
                "supportedVersions": SUPPORTED_VERSIONS,
            });
            let _ = writeln!(stdout, "{answer}");
            ExitCode::SUCCESS
        }
        other => {
            let what = if other.is_empty() {
                "CNI_COMMAND is not set".to_string()
            } else {
                format!("CNI_COMMAND {other} is not available in this build of weave-net yet")
            };
            let error = serde_json::json!({
                "cniVersion": "1.1.0",
                "code": NOT_AVAILABLE_CODE,
                "msg": what,
            });
            let _ = writeln!(stdout, "{error}");
            ExitCode::FAILURE
        }
    }
}
