//! Test harness for the plugin: "nodes" are network namespaces joined by a veth underlay
//! (RFC 5737 addresses), each running a real `weft router`; "pods" are more namespaces; the
//! plugin binary is run inside a node namespace exactly as a runtime would run it. Every
//! namespace and process is named after the test and the pid, and removed on drop, also when
//! the test fails. Needs root, iproute2 and python3.

#![allow(dead_code)]

pub use weft_testkit::netlab;

#[allow(unused_imports)] // each test file uses its own part
pub use netlab::{in_netns, run, wait_until, weft};

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_weave-net");

/// Where Debian's containernetworking-plugins puts the reference plugins.
pub const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

/// One plugin invocation's outcome.
#[derive(Debug)]
pub struct Answer {
    pub ok: bool,
    /// The parsed stdout (`Null` when it printed nothing).
    pub json: Value,
    pub elapsed: Duration,
}

impl Answer {
    /// The error code, for failures.
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected a failure: {self:?}");
        self.json["code"].as_u64().expect("error JSON has a code")
    }

    pub fn msg(&self) -> &str {
        self.json["msg"].as_str().unwrap_or_default()
    }

    /// The result, for successes.
    pub fn result(&self) -> &Value {
        assert!(self.ok, "expected success: {self:?}");
        &self.json
    }
}

/// The namespaces and routers of one test, removed on drop: the shared namespaced lab, with
/// the plugin tests' way of starting routers.
pub struct Lab {
    inner: netlab::Lab,
}

impl std::ops::Deref for Lab {
    type Target = netlab::Lab;

    fn deref(&self) -> &netlab::Lab {
        &self.inner
    }
}

impl std::ops::DerefMut for Lab {
    fn deref_mut(&mut self) -> &mut netlab::Lab {
        &mut self.inner
    }
}

impl Lab {
    /// `tag` must be unique among the tests of the workspace (it names the namespaces).
    pub fn new(tag: &str) -> Self {
        Self {
            inner: netlab::Lab::new(tag),
        }
    }

    /// Starts a router in `node` (HTTP API on the node's 127.0.0.1:6784), its IPAM waiting for
    /// `consensus` routers.
    pub fn router(&mut self, node: &str, name: &str, host: &str, consensus: usize, peers: &[&str]) {
        let consensus = format!("consensus={consensus}");
        let mut args = vec![
            "--name",
            name,
            "--nickname",
            node,
            "--host",
            host,
            "--ipalloc-init",
            &consensus,
        ];
        args.extend_from_slice(peers);
        self.inner.spawn_router(node, node, &args);
    }

    /// A node with a router that forms a ring on its own, its bridge addressed: ready for pods.
    pub fn single_node(&mut self, name: &str) -> String {
        let node = self.netns(name);
        self.router(&node, "00:00:00:00:c1:01", "127.0.0.1", 1, &[]);
        wait_ready(&node);
        node
    }
}

/// Waits until the node's router says STATUS ready through the plugin itself.
pub fn wait_ready(node: &str) {
    let ready = wait_until(Duration::from_secs(30), || {
        plugin(node, "STATUS", &[], &conf("1.1.0")).ok
    });
    assert!(ready, "the router in {node} never became ready");
}

/// A plain config of `version` for our plugin.
pub fn conf(version: &str) -> Value {
    serde_json::json!({"cniVersion": version, "name": "weave", "type": "weave-net"})
}

/// The config with `prevResult` set.
pub fn with_prev(mut conf: Value, prev: &Value) -> Value {
    conf["prevResult"] = prev.clone();
    conf
}

/// Runs the plugin as `program` (a path to the plugin or a link to it) inside `node`. A JSON
/// string as `conf` is sent raw (to send bytes that are not JSON).
pub fn plugin_as(
    program: &str,
    node: &str,
    command: &str,
    env: &[(&str, &str)],
    conf: &Value,
) -> Answer {
    let started = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", node, program])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", command)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            match conf {
                Value::String(raw) => raw.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            }
            .as_slice(),
        )
        .expect("write config");
    let output = child.wait_with_output().expect("plugin output");
    let elapsed = started.elapsed();
    let json = if output.stdout.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("plugin printed no JSON ({e}): {output:?}"))
    };
    Answer {
        ok: output.status.success(),
        json,
        elapsed,
    }
}

/// Runs the plugin inside `node`.
pub fn plugin(node: &str, command: &str, env: &[(&str, &str)], conf: &Value) -> Answer {
    plugin_as(PLUGIN, node, command, env, conf)
}

/// The per-container environment for a pod namespace.
pub fn pod_env<'a>(id: &'a str, netns_path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns_path),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", REFERENCE_PLUGINS),
    ]
}

/// `/var/run/netns/NAME`.
pub fn netns_path(netns: &str) -> String {
    format!("/var/run/netns/{netns}")
}

/// The router's `/ip` list of idents in `node`.
pub fn owned_idents(node: &str) -> Vec<String> {
    let output = in_netns(node, "curl", &["-sf", "127.0.0.1:6784/ip"]);
    assert!(output.status.success(), "curl /ip: {output:?}");
    let owned: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    owned["owned"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["containerid"].as_str().map(String::from))
        .collect()
}

/// Host veths (`vethwepl*`) in `node`.
pub fn host_veths(node: &str) -> Vec<String> {
    run("ip", &["-n", node, "-o", "link", "show"])
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .filter(|name| name.starts_with("vethwepl"))
        .collect()
}

/// One TCP exchange from `client_ns` to `ip:port`, served in `server_ns` on `server_port`
/// (different from `port` behind a port mapping); what the server saw as the client's address,
/// or `None` when the connection failed.
pub fn tcp_peer(
    client_ns: &str,
    server_ns: &str,
    server_port: u16,
    ip: &str,
    port: u16,
) -> Option<String> {
    let server = format!(
        "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);\
         s.bind(('0.0.0.0',{server_port}));s.listen();s.settimeout(8);c,a=s.accept();\
         c.sendall(a[0].encode());c.close()"
    );
    let mut listener = Command::new("ip")
        .args(["netns", "exec", server_ns, "python3", "-c", &server])
        .stderr(Stdio::null())
        .spawn()
        .expect("start a TCP server");
    std::thread::sleep(Duration::from_millis(300));
    let client = format!(
        "import socket;s=socket.create_connection(('{ip}',{port}),timeout=4);print(s.recv(64).decode())"
    );
    let output = in_netns(client_ns, "python3", &["-c", &client]);
    let _ = listener.kill();
    let _ = listener.wait();
    let seen = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (!seen.is_empty()).then_some(seen)
}

/// One ping from `netns` to `ip`.
pub fn pings(netns: &str, ip: &str) -> bool {
    in_netns(netns, "ping", &["-c", "1", "-W", "2", ip])
        .status
        .success()
}
