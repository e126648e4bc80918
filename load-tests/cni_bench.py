#!/usr/bin/env python3
"""CNI plugin latency: ADD and DEL of many pods, as a runtime would call the plugin, against the
reference plugins (`bridge` + `host-local`, Debian's containernetworking-plugins) in the same run.

One "node" network namespace runs a `weft router` (its own ring, consensus=1, the data plane
on: bridge, VXLAN device, masquerading). `--pods N` pod namespaces (default 100) are made up
front. Then, from inside the node namespace (so the timing holds no `ip netns exec`), each
round runs one block per plugin: the plugin with CNI_COMMAND=ADD for each pod one after the
other, then DEL for each, each invocation timed from process start to exit (what
kubelet/containerd waits for). Blocks, not pod-by-pod interleaving: the router's leftover work
after one of our calls would otherwise slow the reference's next one. The order of the blocks
alternates between rounds. Reports p50/p90/p99/max for ADD and DEL per plugin (the median over
`--rounds`, default 5, and each round), and checks every ADD gave a distinct address and every
DEL left no veth.

The reference is configured as a Weft node is: a bridge that is the pods' gateway, no per-pod
masquerade rule (`ipMasq: false`; the router masquerades once for the whole range), addresses
from a host-local range written to the benchmark's own directory.

  load-tests/cni_bench.py                       # release builds (built if missing), 100 pods
  load-tests/cni_bench.py --pods 200 --rounds 3 --json
  load-tests/cni_bench.py --weft target/debug/weft --plugin target/debug/weave-net
  load-tests/cni_bench.py --reference-dir none  # Weft only

Needs root; Python 3 standard library; iproute2; containernetworking-plugins for the reference
(`/usr/lib/cni`). Not run in CI. Every namespace is named wcb-<pid>-...; all of them and the
router are removed on exit, also on failure or Ctrl-C.
"""

import argparse
import hashlib
import json
import math
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
# Where Debian installs the reference plugins.
REFERENCE_DIR = "/usr/lib/cni"
# The reference's range: outside Weft's 10.32.0.0/12, so the two never meet.
REFERENCE_SUBNET = "10.99.0.0/16"
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
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or
    below it (rank ceil(fraction * n); p99 of 100 samples is the 99th, not the maximum)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
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


def reference_conf(workdir):
    return {
        "cniVersion": "1.0.0",
        "name": "reference",
        "type": "bridge",
        "bridge": "cni-ref0",
        "isGateway": True,
        "ipMasq": False,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": REFERENCE_SUBNET}]],
            "dataDir": os.path.join(workdir, "host-local"),
        },
    }


def invoke(plugin, conf, command, container, netns):
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
        [plugin], input=json.dumps(conf).encode(), env=env, capture_output=True, timeout=60
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{command} {container} failed: {done.stdout.decode()}{done.stderr.decode()}")
    return elapsed_ms, done.stdout


def container_id(pod):
    """A 64-hex-digit id, like a runtime's (the host veth takes its first 7 characters)."""
    return hashlib.sha256(pod.encode()).hexdigest()


def block(plugin, conf, pods):
    """ADD every pod, then DEL every pod; the samples and the addresses given."""
    adds, dels, addresses = [], [], set()
    for pod in pods:
        elapsed, out = invoke(plugin, conf, "ADD", container_id(pod), f"/var/run/netns/{pod}")
        adds.append(elapsed)
        addresses.add(json.loads(out)["ips"][0]["address"])
    for pod in pods:
        elapsed, _ = invoke(plugin, conf, "DEL", container_id(pod), f"/var/run/netns/{pod}")
        dels.append(elapsed)
    return {"add": adds, "del": dels, "distinct_addresses": len(addresses)}


def inner(args):
    """Runs inside the node namespace: the rounds of blocks; prints JSON samples per plugin."""
    plugins = [("weft", args.plugin, CONF)]
    if args.reference_plugin:
        plugins.append(("reference", args.reference_plugin, reference_conf(args.workdir)))
    rounds = []
    for number in range(args.rounds):
        # Alternate who goes first, so neither always runs on a machine the other just warmed.
        order = plugins if number % 2 == 0 else list(reversed(plugins))
        rounds.append({name: block(plugin, conf, args.pod_namespaces) for name, plugin, conf in order})
    print(json.dumps(rounds))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--weft")
    parser.add_argument("--plugin")
    parser.add_argument("--reference-dir", default=REFERENCE_DIR,
                        help="where the reference bridge and host-local plugins are ('none': skip)")
    parser.add_argument("--reference-plugin", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("pod_namespaces", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        return inner(args)
    if os.geteuid() != 0:
        sys.exit("cni_bench.py must run as root (network namespaces)")
    if args.pods < 1 or args.rounds < 1:
        sys.exit("--pods and --rounds must be at least 1")
    weft, plugin = binaries(args)
    reference = None
    if args.reference_dir != "none":
        reference = os.path.join(args.reference_dir, "bridge")
        missing = [p for p in ("bridge", "host-local") if not os.path.exists(os.path.join(args.reference_dir, p))]
        if missing:
            sys.exit(f"no reference plugin {', '.join(missing)} in {args.reference_dir} "
                     "(apt install containernetworking-plugins, or --reference-dir none)")
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
        command = ["ip", "netns", "exec", node, sys.executable, os.path.abspath(__file__), "--inner",
                   "--plugin", plugin, "--rounds", str(args.rounds), "--workdir", workdir]
        if reference:
            command += ["--reference-plugin", reference]
        measured = subprocess.run(command + pods, capture_output=True)
        if measured.returncode != 0:
            sys.exit(f"the benchmark failed: {measured.stdout.decode()}{measured.stderr.decode()}")
        rounds = json.loads(measured.stdout)
        links = subprocess.run(["ip", "-n", node, "-o", "link", "show"], capture_output=True, text=True)
        left = links.stdout.count("vethwepl") + links.stdout.count("master cni-ref0")
        report = {
            "pods": args.pods,
            "rounds": args.rounds,
            "plugin": plugin,
            "reference": reference,
            "weft": weft,
            "per_round": [
                {name: {"add": summary(s["add"]), "del": summary(s["del"]),
                        "distinct_addresses": s["distinct_addresses"]} for name, s in r.items()}
                for r in rounds
            ],
            "veths_left": left,
            "goal_add_p99_ms": GOAL_P99_MS,
        }
        names = list(rounds[0].keys())
        report["median"] = {
            name: {op: {key: round(statistics.median(r[name][op][key] for r in report["per_round"]), 2)
                        for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}
                   for op in ("add", "del")}
            for name in names
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(f"{args.pods} pods one at a time, {args.rounds} rounds of one block per plugin; "
                  f"median over the rounds (weft: {plugin}; reference: {reference or 'skipped'})")
            for name in names:
                for op in ("add", "del"):
                    s = report["median"][name][op]
                    print(f"{name:9} {op.upper():3} p50 {s['p50_ms']:6.2f} ms  p90 {s['p90_ms']:6.2f} ms  "
                          f"p99 {s['p99_ms']:6.2f} ms  max {s['max_ms']:6.2f} ms  mean {s['mean_ms']:6.2f} ms")
            if "reference" in names:
                for op in ("add", "del"):
                    ours, ref = report["median"]["weft"][op], report["median"]["reference"][op]
                    print(f"ratio weft/reference {op.upper()}: p50 {ours['p50_ms'] / ref['p50_ms']:.2f}x  "
                          f"p99 {ours['p99_ms'] / ref['p99_ms']:.2f}x")
            for number, r in enumerate(report["per_round"], 1):
                cells = "  ".join(f"{name} ADD p50/p99 {r[name]['add']['p50_ms']:.1f}/{r[name]['add']['p99_ms']:.1f}"
                                  for name in names)
                print(f"round {number}: {cells}")
            worst = report["median"]["weft"]["add"]["p99_ms"]
            verdict = "met" if worst < GOAL_P99_MS else "NOT met"
            print(f"goal ADD p99 < {GOAL_P99_MS:.0f} ms: {verdict}; {left} veths left after DEL")
        wrong = [r[name]["distinct_addresses"] for r in report["per_round"] for name in names
                 if r[name]["distinct_addresses"] != args.pods]
        if wrong or left:
            sys.exit(f"distinct addresses per block {wrong}, veths left {left}")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
