#!/usr/bin/env python3
"""CNI plugin latency: ADD and DEL of many pods, as a runtime would call the plugin.

One "node" network namespace runs a `weft router` (its own ring, consensus=1, the data plane
on: bridge, VXLAN device, masquerading). `--pods N` pod namespaces (default 100) are made up
front; then, from inside the node namespace (so the timing holds no `ip netns exec`), the
plugin is run with CNI_COMMAND=ADD for each pod one after the other, then DEL for each, each
invocation timed from process start to exit (what kubelet/containerd waits for). Reports
p50/p90/p99/max for ADD and DEL, and checks every ADD gave a distinct address and every DEL
left no veth.

  load-tests/cni_bench.py                       # release builds (built if missing), 100 pods
  load-tests/cni_bench.py --pods 200 --json
  load-tests/cni_bench.py --weft target/debug/weft --plugin target/debug/weave-net

Needs root; Python 3 standard library; iproute2. Not run in CI. Every namespace is named
wcb-<pid>-...; all of them and the router are removed on exit, also on failure or Ctrl-C.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = {"cniVersion": "1.0.0", "name": "weave", "type": "weave-net"}
# The goal: ADD p99 under 50 ms on this machine, so that a burst of pods on a node is not held
# up by the plugin.
GOAL_P99_MS = 50.0
# How long the router may take to answer STATUS ready (seconds).
READY_TIMEOUT_S = 30


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def binaries(args):
    """The weft and plugin binaries: given, else release builds (built when missing)."""
    release = os.path.join(target_dir(), "release")
    weft = args.weft or os.path.join(release, "weft")
    plugin = args.plugin or os.path.join(release, "weave-net")
    if not (os.path.exists(weft) and os.path.exists(plugin)):
        print("building release binaries (cargo build --release)...", file=sys.stderr)
        subprocess.run(
            # Both packages of the workspace: weft (the router) and weave-net-cni (the plugin).
            ["cargo", "build", "--release", "--quiet", "--workspace", "--bins"],
            cwd=ROOT,
            check=True,
        )
    return weft, plugin


def percentile(values, fraction):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def summary(samples_ms):
    return {
        "count": len(samples_ms),
        "p50_ms": round(percentile(samples_ms, 0.50), 2),
        "p90_ms": round(percentile(samples_ms, 0.90), 2),
        "p99_ms": round(percentile(samples_ms, 0.99), 2),
        "max_ms": round(max(samples_ms), 2),
        "mean_ms": round(statistics.mean(samples_ms), 2),
    }


def invoke(plugin, command, container, netns):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": os.path.dirname(plugin),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [plugin], input=json.dumps(CONF).encode(), env=env, capture_output=True, timeout=60
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{command} {container} failed: {done.stdout.decode()}{done.stderr.decode()}")
    return elapsed_ms, done.stdout


def container_id(pod):
    """A 64-hex-digit id, like a runtime's (the host veth takes its first 7 characters)."""
    return hashlib.sha256(pod.encode()).hexdigest()


def inner(args):
    """Runs inside the node namespace: ADD all pods, then DEL all; prints JSON samples."""
    adds, dels, addresses = [], [], set()
    for pod in args.pod_namespaces:
        elapsed, out = invoke(args.plugin, "ADD", container_id(pod), f"/var/run/netns/{pod}")
        adds.append(elapsed)
        addresses.add(json.loads(out)["ips"][0]["address"])
    for pod in args.pod_namespaces:
        elapsed, _ = invoke(args.plugin, "DEL", container_id(pod), f"/var/run/netns/{pod}")
        dels.append(elapsed)
    print(json.dumps({"add": adds, "del": dels, "distinct_addresses": len(addresses)}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--weft")
    parser.add_argument("--plugin")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("pod_namespaces", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return inner(args)
    if os.geteuid() != 0:
        sys.exit("cni_bench.py must run as root (network namespaces)")
    if args.pods < 1:
        sys.exit("--pods must be at least 1")
    weft, plugin = binaries(args)
    tag = f"wcb-{os.getpid()}"
    node = f"{tag}-node"
    pods = [f"{tag}-p{i}" for i in range(args.pods)]
    made = []
    router = None
    workdir = tempfile.mkdtemp(prefix="weft-cni-bench-")

    def cleanup(*_):
        if router is not None and router.poll() is None:
            router.kill()
            router.wait()
        for ns in reversed(made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(workdir, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    try:
        for ns in [node] + pods:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            made.append(ns)
        subprocess.run(["ip", "-n", node, "link", "set", "lo", "up"], check=True)
        log = open(os.path.join(workdir, "router.log"), "w")
        router = subprocess.Popen(
            ["ip", "netns", "exec", node, weft, "router", "--name", "00:00:00:00:cb:01",
             "--nickname", "bench", "--http-addr", "127.0.0.1:6784", "--metrics-addr",
             "127.0.0.1:6782", "--db-prefix", os.path.join(workdir, "weave-net"),
             "--ipalloc-init", "consensus=1", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        status = {**CONF, "cniVersion": "1.1.0"}
        while True:
            ready = subprocess.run(
                ["ip", "netns", "exec", node, plugin], input=json.dumps(status).encode(),
                env={"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": "STATUS"},
                capture_output=True)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                sys.exit(f"router not ready: {ready.stdout.decode()}")
            time.sleep(0.2)
        measured = subprocess.run(
            ["ip", "netns", "exec", node, sys.executable, os.path.abspath(__file__), "--inner",
             "--plugin", plugin, *pods],
            check=True, capture_output=True)
        samples = json.loads(measured.stdout)
        veths = subprocess.run(["ip", "-n", node, "-o", "link", "show"], capture_output=True, text=True)
        left = veths.stdout.count("vethwepl")
        report = {
            "pods": args.pods,
            "plugin": plugin,
            "weft": weft,
            "add": summary(samples["add"]),
            "del": summary(samples["del"]),
            "distinct_addresses": samples["distinct_addresses"],
            "veths_left": left,
            "goal_add_p99_ms": GOAL_P99_MS,
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"plugin {plugin}, router {weft}, {args.pods} pods, one at a time")
            for op in ("add", "del"):
                s = report[op]
                print(f"{op.upper():4} p50 {s['p50_ms']:7.2f} ms  p90 {s['p90_ms']:7.2f} ms  "
                      f"p99 {s['p99_ms']:7.2f} ms  max {s['max_ms']:7.2f} ms  mean {s['mean_ms']:7.2f} ms")
            verdict = "met" if report["add"]["p99_ms"] < GOAL_P99_MS else "NOT met"
            print(f"goal ADD p99 < {GOAL_P99_MS:.0f} ms: {verdict}; "
                  f"{report['distinct_addresses']} distinct addresses; {left} veths left after DEL")
        if report["distinct_addresses"] != args.pods or left:
            sys.exit(1)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
