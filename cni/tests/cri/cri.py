#!/usr/bin/python3
"""The kubelet side of the real-runtime test: a minimal CRI client (RunPodSandbox,
PodSandboxStatus, StopPodSandbox, RemovePodSandbox, exactly the calls kubelet makes for a pod's
network) over containerd's gRPC socket, and a builder for the pause image (a one-layer OCI image
tarball around a static pause binary, for `ctr images import`: no registry needed).

Needs Debian's python3-grpcio and python3-grpc-tools (the stubs are generated from api.proto,
Kubernetes' CRI v1 definitions, into a temporary directory on each run).

Usage:
  cri.py image OUT.tar PAUSE_BINARY IMAGE_NAME
  cri.py run SOCKET POD_NAME POD_UID [PORT_MAPPING hostPort:containerPort]
  cri.py status SOCKET SANDBOX_ID        -> prints "IP NETNS_PATH"
  cri.py stop SOCKET SANDBOX_ID
  cri.py remove SOCKET SANDBOX_ID
  cri.py cleanup SOCKET                  -> stops and removes every sandbox
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile

# Bounded calls: a wedged runtime fails the test instead of hanging it (seconds).
CALL_TIMEOUT = 60


def stubs():
    """Generates and imports the CRI stubs."""
    from grpc_tools import protoc

    here = os.path.dirname(os.path.abspath(__file__))
    # Once imported, the stubs live in memory: the directory goes (every call made one, and
    # each test run left ten behind in /tmp).
    with tempfile.TemporaryDirectory(prefix="weft-cri-stubs-") as out:
        code = protoc.main(
            ["protoc", f"-I{here}", f"--python_out={out}", f"--grpc_python_out={out}", "api.proto"]
        )
        if code != 0:
            sys.exit(f"protoc failed with {code}")
        sys.path.insert(0, out)
        try:
            import api_pb2
            import api_pb2_grpc
        finally:
            sys.path.remove(out)

    return api_pb2, api_pb2_grpc


def client(socket):
    import grpc

    pb, rpc = stubs()
    channel = grpc.insecure_channel(f"unix://{socket}")
    return pb, rpc.RuntimeServiceStub(channel)


def sandbox_config(pb, name, uid, mappings):
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace="default", attempt=0),
        hostname=name,
        port_mappings=[
            pb.PortMapping(protocol=pb.TCP, host_port=int(h), container_port=int(c))
            for h, c in (m.split(":") for m in mappings)
        ],
        linux=pb.LinuxPodSandboxConfig(),
    )


def run(socket, name, uid, *mappings):
    pb, cri = client(socket)
    config = sandbox_config(pb, name, uid, mappings)
    reply = cri.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=CALL_TIMEOUT)
    print(reply.pod_sandbox_id)


def status(socket, sandbox):
    pb, cri = client(socket)
    reply = cri.PodSandboxStatus(
        pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox, verbose=True), timeout=CALL_TIMEOUT
    )
    info = json.loads(reply.info.get("info", "{}"))
    namespaces = info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", [])
    netns = next((n.get("path", "") for n in namespaces if n.get("type") == "network"), "")
    print(reply.status.network.ip, netns)


def stop(socket, sandbox):
    pb, cri = client(socket)
    cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox), timeout=CALL_TIMEOUT)


def remove(socket, sandbox):
    pb, cri = client(socket)
    cri.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox), timeout=CALL_TIMEOUT)


def cleanup(socket):
    pb, cri = client(socket)
    for sandbox in cri.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=CALL_TIMEOUT).items:
        cri.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=CALL_TIMEOUT)
        cri.RemovePodSandbox(
            pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id), timeout=CALL_TIMEOUT
        )


def blob(layout, data):
    """Adds a blob to the OCI layout tar; its descriptor digest and size."""
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    layout.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def image(out, pause, name):
    """A one-layer OCI image (linux/amd64) whose entrypoint is /pause."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as layer:
        layer.add(pause, arcname="pause")
    raw_layer = layer_tar.getvalue()
    # mtime 0: the same binary always gives the same image.
    gz_layer = gzip.compress(raw_layer, mtime=0)
    with tarfile.open(out, mode="w") as layout:
        layer_digest, layer_size = blob(layout, gz_layer)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": ["/pause"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(raw_layer).hexdigest()],
            },
        }
        config_digest, config_size = blob(layout, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        }
        manifest_digest, manifest_size = blob(layout, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "annotations": {"io.containerd.image.name": name},
                }
            ],
        }
        for path, data in (
            ("index.json", json.dumps(index).encode()),
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            layout.addfile(info, io.BytesIO(data))


COMMANDS = {
    "image": image,
    "run": run,
    "status": status,
    "stop": stop,
    "remove": remove,
    "cleanup": cleanup,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
