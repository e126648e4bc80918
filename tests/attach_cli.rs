//! `weft attach`, `weft detach` and `weft reset` as an operator runs them: the built binary,
//! started with `ip netns exec` inside a throwaway "node" namespace, wiring a throwaway "pod"
//! namespace to a bridge there. Needs root, iproute2 and nftables; nothing touches the runner's
//! namespace.

use std::process::{Command, Output};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A named network namespace, deleted on drop (also after a failed assertion).
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Self {
        let name = format!("weft-cli-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ns = Self(name);
        run("ip", &["netns", "add", &ns.0]);
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.0.as_str()];
        full.extend_from_slice(args);
        let out = run("ip", &full);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `weft ARGS` run inside this namespace.
    fn weft(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, WEFT])
            .args(args)
            .output()
            .expect("run ip netns exec weft")
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("run ip (install iproute2)");
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    out
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn attach_detach_and_reset_from_the_command_line() {
    let node = Ns::new("node");
    let pod = Ns::new("pod");
    node.ip(&["link", "add", "weave", "mtu", "1450", "type", "bridge"]);
    node.ip(&["link", "set", "weave", "up"]);
    node.ip(&["link", "set", "lo", "up"]);

    let attach = [
        "attach",
        "--netns",
        &pod.0,
        "--ip",
        "10.32.0.2/12",
        "--gateway",
        "10.32.0.1",
    ];
    let text = stdout(&node.weft(&attach));
    assert!(text.starts_with("attached /var/run/netns/"), "{text}");
    assert!(text.contains("MTU 1450"), "{text}");
    let text = stdout(&node.weft(&attach));
    assert!(text.starts_with("already attached"), "{text}");
    let addr = pod.ip(&["addr", "show", "eth0"]);
    assert!(
        addr.contains("10.32.0.2/12") && addr.contains("mtu 1450"),
        "{addr}"
    );
    assert!(
        node.ip(&["link", "show", "master", "weave"])
            .contains("vethwepl")
    );

    let text = stdout(&node.weft(&["detach", "--netns", &pod.0]));
    assert!(text.starts_with("detached"), "{text}");
    let text = stdout(&node.weft(&["detach", "--netns", &pod.0]));
    assert!(text.starts_with("not attached"), "{text}");

    // The router's masquerading table, as a router would have left it.
    run(
        "ip",
        &[
            "netns", "exec", &node.0, "nft", "add", "table", "ip", "weft",
        ],
    );
    // No router in the node namespace: reset notes it and still removes the devices.
    let reset = ["--http-addr", "127.0.0.1:1", "reset"];
    let out = node.weft(&reset);
    assert!(stdout(&out).contains("removed weave"), "{out:?}");
    assert!(
        stdout(&out).contains("removed nftables table ip weft"),
        "{out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("note:"),
        "{out:?}"
    );
    assert_eq!(stdout(&node.weft(&reset)), "", "nothing left to remove");

    let bad = node.weft(&["attach", "--netns", "a/b"]);
    assert!(!bad.status.success());
}
