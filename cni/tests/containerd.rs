//! A real runtime drives the plugin: Debian's containerd (with runc) runs in each of two node
//! namespaces, its CRI plugin pointed at the plugin and config list that `weft setup-cni`
//! installed, and pod sandboxes are made and removed through the CRI API exactly as kubelet
//! does (RunPodSandbox, StopPodSandbox, RemovePodSandbox; `cri/cri.py` is the client). Node A's
//! config list is the one setup-cni writes (CNI 1.0.0), node B's is edited to 0.4.0, so both
//! result layouts go through containerd's libcni. The pause image is built here from a static C
//! binary; no registry is used. Pods get addresses from Weft and reach each other across nodes,
//! a pod's host port (portmap, chained by containerd) is reachable from the other node, and
//! afterwards nothing is left: no sandbox, veth, allocation, shim or mount.
//!
//! Needs root and the packages containerd, runc, containernetworking-plugins, gcc and libc6-dev,
//! python3-grpcio and python3-grpc-tools (scripts/test.sh installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use weft_netdev::attach::container_veth_name;

/// Debian's interpreter: the grpc modules are Debian packages, not in a pyenv or venv.
const PYTHON: &str = "/usr/bin/python3";
/// The sandbox image's name, as CRI normalises it.
const PAUSE_IMAGE: &str = "docker.io/weft/pause:local";
/// Pod 0's `hostPort:containerPort`.
const HOST_PORT_MAPPING: &str = "18081:8081";
/// The CRI namespace of containerd, where kubelet's images and sandboxes live.
const K8S_NAMESPACE: &str = "k8s.io";

fn cri_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri/cri.py")
}

/// Runs `cri.py ARGS` and returns its stdout, failing the test when it fails.
fn cri(args: &[&str]) -> String {
    let output = Command::new(PYTHON)
        .arg(cri_script())
        .args(args)
        .output()
        .expect("run cri.py");
    assert!(output.status.success(), "cri.py {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: apt-get install {package} (scripts/test.sh does)"
    );
}

/// One containerd, in a node's namespace, with its state under `dir`. Dropping it removes its
/// sandboxes, stops it and the shims it started, and unmounts whatever it left under `dir`.
struct Containerd {
    child: Child,
    dir: PathBuf,
    socket: String,
}

impl Containerd {
    /// Installs the plugin with `weft setup-cni`, sets the config list's version, and starts
    /// containerd in `node`.
    fn start(node: &str, dir: PathBuf, cni_version: &str) -> Self {
        let (bin, conf) = (dir.join("bin"), dir.join("net.d"));
        let setup = Command::new(weft())
            .args(["setup-cni", "--plugin", PLUGIN, "--bin-dir"])
            .arg(&bin)
            .arg("--conf-dir")
            .arg(&conf)
            .output()
            .expect("run weft setup-cni");
        assert!(setup.status.success(), "{setup:?}");
        // containerd needs loopback; the config list chains portmap.
        for plugin in ["loopback", "portmap"] {
            std::os::unix::fs::symlink(Path::new(REFERENCE_PLUGINS).join(plugin), bin.join(plugin))
                .expect("link a reference plugin");
        }
        let conflist = conf.join("10-weave.conflist");
        let mut list: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&conflist).expect("conflist")).expect("JSON");
        list["cniVersion"] = cni_version.into();
        std::fs::write(&conflist, list.to_string()).expect("write conflist");

        let socket = dir.join("containerd.sock").display().to_string();
        let d = dir.display();
        let config = format!(
            "version = 2\n\
             root = \"{d}/root\"\n\
             state = \"{d}/state\"\n\
             [grpc]\n  address = \"{socket}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n\
             \x20 sandbox_image = \"{PAUSE_IMAGE}\"\n\
             \x20 restrict_oom_score_adj = true\n\
             \x20 [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n\
             \x20   snapshotter = \"native\"\n\
             \x20 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n\
             \x20   bin_dir = \"{d}/bin\"\n\
             \x20   conf_dir = \"{d}/net.d\"\n"
        );
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config).expect("write config.toml");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        // nsenter (not `ip netns exec`): same mount namespace, so containerd's pinned pod
        // namespaces under /var/run/netns are visible to the test.
        let child = Command::new("nsenter")
            .arg(format!("--net={}", netns_path(node)))
            .arg("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let this = Self { child, dir, socket };
        assert!(
            wait_until(Duration::from_secs(20), || Path::new(&this.socket).exists()),
            "containerd did not open {}",
            this.socket
        );
        this
    }

    /// `ctr -n k8s.io images import TARBALL`.
    fn import(&self, tarball: &Path) {
        let output = Command::new("ctr")
            .args([
                "--address",
                &self.socket,
                "-n",
                K8S_NAMESPACE,
                "images",
                "import",
            ])
            .arg(tarball)
            .output()
            .expect("run ctr");
        assert!(output.status.success(), "ctr import: {output:?}");
    }

    /// Pids of the shims this containerd started (their command line names our socket).
    fn shims(&self) -> Vec<i32> {
        let needle = self.socket.as_bytes();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| *pid != self.child.id() as i32)
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Through CRI first, so the plugin's DEL runs and the runtime unmounts what it mounted.
        let _ = Command::new(PYTHON)
            .arg(cri_script())
            .args(["cleanup", &self.socket])
            .output();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.shims() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let prefix = self.dir.display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .filter(|point| point.starts_with(&prefix))
            .collect();
        // Deepest first.
        points.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- containerd {} (last lines, newest first)", self.socket);
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// Builds the pause binary and its one-layer OCI image tarball in `dir`.
fn pause_image(dir: &Path) -> PathBuf {
    let source = dir.join("pause.c");
    std::fs::write(
        &source,
        "#include <signal.h>\n#include <unistd.h>\n\
         static void done(int sig) { (void)sig; _exit(0); }\n\
         int main(void) { signal(SIGINT, done); signal(SIGTERM, done); for (;;) pause(); }\n",
    )
    .expect("write pause.c");
    let binary = dir.join("pause");
    let built = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("run gcc (apt-get install gcc libc6-dev)");
    assert!(built.status.success(), "gcc: {built:?}");
    let tarball = dir.join("pause.tar");
    cri(&[
        "image",
        &tarball.display().to_string(),
        &binary.display().to_string(),
        PAUSE_IMAGE,
    ]);
    tarball
}

#[test]
fn containerd_runs_pods_on_two_nodes_through_the_plugin() {
    for (path, package) in [
        ("/usr/bin/containerd", "containerd"),
        ("/usr/sbin/runc", "runc"),
        ("/usr/lib/cni/portmap", "containernetworking-plugins"),
        (PYTHON, "python3"),
    ] {
        require(path, package);
    }
    let mut lab = Lab::new("ctrd");
    let a = lab.netns("a");
    let b = lab.netns("b");
    lab.link(&a, "192.0.2.1/24", &b, "192.0.2.2/24");
    lab.router(&a, "00:00:00:00:c3:01", "192.0.2.1", 2, &[]);
    lab.router(&b, "00:00:00:00:c3:02", "192.0.2.2", 2, &["192.0.2.1"]);
    wait_ready(&a);
    wait_ready(&b);
    let tarball = pause_image(lab.dir());

    let mut runtimes = Vec::new();
    for (node, version) in [(&a, "1.0.0"), (&b, "0.4.0")] {
        let dir = lab.dir().join(format!("containerd-{node}"));
        let runtime = Containerd::start(node, dir, version);
        runtime.import(&tarball);
        runtimes.push(runtime);
    }

    let pid = std::process::id();
    let mut pods = Vec::new();
    for (i, (node, runtime)) in [&a, &b].into_iter().zip(&runtimes).enumerate() {
        let name = format!("pod{i}-{pid}");
        // Pod 0 asks for a host port, as a pod with `hostPort` does: containerd hands it to
        // the chained portmap as the portMappings capability.
        let uid = format!("uid-{name}");
        let mut request = vec!["run", runtime.socket.as_str(), &name, &uid];
        if i == 0 {
            request.push(HOST_PORT_MAPPING);
        }
        let sandbox = cri(&request);
        let status = cri(&["status", &runtime.socket, &sandbox]);
        let (ip, netns) = status.split_once(' ').expect("IP and namespace");
        let octets = ip
            .parse::<std::net::Ipv4Addr>()
            .expect("an IPv4 address")
            .octets();
        assert!(
            octets[0] == 10 && (32..48).contains(&octets[1]),
            "an address in Weft's 10.32.0.0/12: {status}"
        );
        let veth = container_veth_name(&sandbox, "eth0");
        assert!(host_veths(node).contains(&veth), "{veth} on {node}");
        assert!(
            owned_idents(node).contains(&sandbox),
            "the router keys it by sandbox id"
        );
        pods.push((sandbox, ip.to_string(), netns.to_string()));
    }

    // Pod on node A reaches pod on node B.
    let ping = |from: &str, to: &str| {
        Command::new("nsenter")
            .arg(format!("--net={from}"))
            .args(["ping", "-c", "1", "-W", "2", to])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    assert!(
        wait_until(Duration::from_secs(20), || ping(&pods[0].2, &pods[1].1)),
        "{} could not reach {}",
        pods[0].1,
        pods[1].1
    );
    assert!(ping(&pods[1].2, &pods[0].1), "and back");

    // Node B reaches pod 0 through node A's host port (portmap, chained by containerd).
    run(
        "ip",
        &[
            "netns",
            "exec",
            &a,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ],
    );
    let pod0_netns = Path::new(&pods[0].2)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .expect("a named namespace under /var/run/netns");
    let seen = tcp_peer(&b, &pod0_netns, 8081, "192.0.2.1", 18081);
    assert!(
        seen.is_some(),
        "host port 18081 on node A did not reach pod 0"
    );

    // Stop (DEL with prevResult), then remove (DEL without namespace): both must succeed.
    for ((sandbox, _, _), (node, runtime)) in pods.iter().zip([&a, &b].into_iter().zip(&runtimes)) {
        cri(&["stop", &runtime.socket, sandbox]);
        assert!(host_veths(node).is_empty(), "stop removed the veth");
        cri(&["remove", &runtime.socket, sandbox]);
        let owned = owned_idents(node);
        assert!(owned.iter().all(|id| id == "weave:expose"), "{owned:?}");
    }
}
