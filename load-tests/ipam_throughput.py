#!/usr/bin/env python3
"""IPAM allocation throughput through the HTTP API.

Starts one router, then three (consensus=3), all control-plane only on loopback addresses, and
allocates --count addresses (default 1000) with --concurrency clients (default 16), spread over
the routers' APIs. Prints allocations per second for each set-up, the ratio three/one, and checks
that every address is distinct. Bounded in count and time; stops everything it started.

Python 3 standard library only. Usage: load-tests/ipam_throughput.py [--weft PATH] [--count N]
"""

import argparse
import concurrent.futures
import ctypes
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mesh_convergence as mc  # noqa: E402  (shared router start/stop helpers)

IP_BASE = 200  # routers on 127.0.0.200..202, away from the mesh test's addresses
REQUEST_TIMEOUT = 30.0  # seconds per allocation (it may wait for consensus or a donation)


class IpamRouter(mc.Router):
    def __init__(self, index, ip, args, root, peers, init):
        super().__init__(index, ip, args, root, 30, f"ipam{index}", peers)
        self.init = init

    def command(self, binary, log_level):
        return super().command(binary, log_level) + ["--ipalloc-init", self.init]


def allocate(router, ident):
    req = urllib.request.Request(f"http://{router.http_addr}/ip/{ident}", method="POST",
                                 headers={"Connection": "close"})
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:
        return resp.read().decode().strip()


def run(args, binary, count, routers_count):
    root = tempfile.mkdtemp(prefix="weft-ipam-")
    routers = []
    try:
        for i in range(1, routers_count + 1):
            peers = [] if i == 1 else [f"127.0.0.{IP_BASE + 1}:{args.port}"]
            router = IpamRouter(i, f"127.0.0.{IP_BASE + i}", args, root, peers,
                                f"consensus={routers_count}")
            routers.append(router)
        os.makedirs(os.path.join(root, "logs"), exist_ok=True)
        for router in routers:
            router.start(binary, "warn")
        deadline = time.monotonic() + mc.READY_TIMEOUT
        for router in routers:
            mc.wait_ready(router, deadline)
        # The first allocation on each router waits for the mesh and the consensus: do it before
        # the clock starts, so that the figure is the steady-state rate.
        for i, router in enumerate(routers):
            allocate(router, f"warm-up-{i}")
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
            futures = [pool.submit(allocate, routers[i % len(routers)], f"c{i}") for i in range(count)]
            addresses = [f.result() for f in futures]
        elapsed = time.monotonic() - started
        if len(set(addresses)) != count:
            raise SystemExit(f"FAIL: {count - len(set(addresses))} duplicate addresses")
        return count / elapsed, elapsed
    finally:
        mc.stop_all(routers)
        shutil.rmtree(root, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weft", help="the weft binary (default: target/release or debug)")
    parser.add_argument("--build", action="store_true", help="cargo build --release first")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port", type=int, default=6783)
    parser.add_argument("--http-port", type=int, default=6784)
    parser.add_argument("--metrics-port", type=int, default=6782)
    args = parser.parse_args()
    if not 1 <= args.count <= 100_000:
        raise SystemExit("--count must be between 1 and 100000")
    mc._LIBC = ctypes.CDLL(None, use_errno=True)
    binary = mc.find_binary(args)
    one, one_s = run(args, binary, args.count, 1)
    three, three_s = run(args, binary, args.count, 3)
    print(f"IPAM allocation throughput ({mc.build_kind(binary)} build, {args.count} allocations, "
          f"{args.concurrency} clients)")
    print(f"  one router:    {one:8.0f} allocations/s ({one_s:.2f} s)")
    print(f"  three routers: {three:8.0f} allocations/s ({three_s:.2f} s), spread over their APIs")
    print(f"  ratio three/one: {three / one:.2f}")


if __name__ == "__main__":
    main()
