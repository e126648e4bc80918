//! [`CniEnv`]: the `CNI_*` environment variables, read and checked before anything is touched
//! (a bad one is code 4, naming the variable), and the router address (`WEAVE_HTTP_ADDR`).

use std::path::PathBuf;

use weft_netdev::attach::ifname_problem;

use crate::error::CniError;

/// The router's HTTP API when `WEAVE_HTTP_ADDR` is not set (Weave Net's).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:6784";

/// `CNI_COMMAND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

/// The checked environment of one invocation.
#[derive(Clone, Debug)]
pub struct CniEnv {
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD, DEL, CHECK).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when empty (allowed for DEL only).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (ADD, DEL, CHECK).
    pub ifname: String,
    /// `CNI_PATH`, split on ':'.
    pub path: Vec<PathBuf>,
    /// The router's API, `host:port`.
    pub http_addr: String,
}

impl CniEnv {
    /// Reads the variables through `var` (the process environment, or a map in tests).
    pub fn read(var: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let invalid = |var: &'static str, reason: &str| CniError::InvalidEnv {
            var,
            reason: reason.to_string(),
        };
        let command = match var("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("GC") => Command::Gc,
            Some("VERSION") => Command::Version,
            None | Some("") => return Err(invalid("CNI_COMMAND", "not set")),
            Some(other) => {
                return Err(CniError::InvalidEnv {
                    var: "CNI_COMMAND",
                    reason: format!("{other:?} is not one of ADD, DEL, CHECK, STATUS, GC, VERSION"),
                });
            }
        };
        let per_container = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = var("CNI_CONTAINERID").unwrap_or_default();
        let ifname = var("CNI_IFNAME").unwrap_or_default();
        let netns = var("CNI_NETNS")
            .filter(|netns| !netns.is_empty())
            .map(PathBuf::from);
        if per_container {
            check_container_id(&container_id)?;
            check_ifname(&ifname)?;
            if netns.is_none() && command != Command::Del {
                return Err(invalid("CNI_NETNS", "not set (required for ADD and CHECK)"));
            }
        }
        let path = var("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .collect();
        // Checked for form only: containerd's K8S_POD_* keys carry nothing we need.
        check_args(&var("CNI_ARGS").unwrap_or_default())?;
        let http_addr = var("WEAVE_HTTP_ADDR")
            .filter(|addr| !addr.is_empty())
            .unwrap_or_else(|| DEFAULT_HTTP_ADDR.to_string());
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            path,
            http_addr,
        })
    }
}

/// The spec's container id syntax: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn is_container_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_container_id(id: &str) -> Result<(), CniError> {
    if is_container_id(id) {
        return Ok(());
    }
    Err(CniError::InvalidEnv {
        var: "CNI_CONTAINERID",
        reason: if id.is_empty() {
            "not set".to_string()
        } else {
            format!("{id:?} is not a container id (letters, digits, '_', '.', '-')")
        },
    })
}

fn check_ifname(name: &str) -> Result<(), CniError> {
    match ifname_problem(name) {
        None => Ok(()),
        Some(reason) => Err(CniError::InvalidEnv {
            var: "CNI_IFNAME",
            reason: format!("{name:?}: {reason}"),
        }),
    }
}

/// `K=V;K=V` (empty is fine); a pair without '=' is code 4.
fn check_args(text: &str) -> Result<(), CniError> {
    match text
        .split(';')
        .find(|pair| !pair.is_empty() && !pair.contains('='))
    {
        None => Ok(()),
        Some(pair) => Err(CniError::InvalidEnv {
            var: "CNI_ARGS",
            reason: format!("{pair:?} is not KEY=VALUE"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::read(|key| map.get(key).cloned())
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc123"),
        ("CNI_NETNS", "/var/run/netns/p"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn containerd_environment_reads() {
        let mut pairs = ADD.to_vec();
        pairs.push((
            "CNI_ARGS",
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;IgnoreUnknown=1",
        ));
        let env = read(&pairs).expect("valid");
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.path.len(), 2);
        assert_eq!(env.http_addr, DEFAULT_HTTP_ADDR);
    }

    #[test]
    fn each_bad_variable_is_named_with_code_4() {
        let bad = |var: &str, value: &str| {
            let mut pairs: Vec<_> = ADD.iter().filter(|(k, _)| *k != var).copied().collect();
            pairs.push((var, value));
            let err = read(&pairs).expect_err(var);
            assert_eq!(err.code(), 4, "{var}={value}: {err}");
            assert!(err.to_string().contains(var), "{err}");
        };
        bad("CNI_COMMAND", "");
        bad("CNI_COMMAND", "FROB");
        bad("CNI_CONTAINERID", "");
        bad("CNI_CONTAINERID", "-leading-dash");
        bad("CNI_IFNAME", "");
        bad("CNI_IFNAME", "much-too-long-name");
        bad("CNI_NETNS", "");
        bad("CNI_ARGS", "novalue");
    }

    #[test]
    fn del_needs_no_namespace_and_status_no_container() {
        let env = read(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ""),
        ])
        .expect("DEL without netns");
        assert!(env.netns.is_none());
        assert!(read(&[("CNI_COMMAND", "STATUS")]).is_ok());
    }
}
