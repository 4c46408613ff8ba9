#!/usr/bin/env python3
"""Writes the demo busybox image as an OCI image layout, tagged `latest`, for
the container benchmarks (bench-run, bench-memory, bench-logs): the same
image src/demo/images.rs builds for `flotilla demo up` — one layer with the
root dirs, the machine's static busybox, its applets as symlinks to it,
/etc/passwd and /etc/group (owner 0, fixed times); config Cmd ["sh"], the
default PATH, WorkingDir /. The scripts push it to a local registry with
skopeo and pull it with `flotilla-agent pull`.

usage: make-busybox-layout.py DIR [--busybox PATH] [--arch ARCH]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

EPOCH = 1767225600  # 2026-01-01T00:00:00Z, as the demo images
CREATED = "2026-01-01T00:00:00Z"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DIRS = [
    ("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755),
    ("proc", 0o555), ("root", 0o700), ("run", 0o755), ("sbin", 0o755),
    ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755), ("usr/bin", 0o755),
    ("usr/sbin", 0o755), ("var", 0o755),
]


def write_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def entry(name, kind, mode, size=0):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def busybox_layer(busybox):
    binary = open(busybox, "rb").read()
    listing = subprocess.run([busybox, "--list-full"], capture_output=True, check=True).stdout
    applets = sorted({l.strip().lstrip("/") for l in listing.decode().splitlines()}
                     - {"", "bin/busybox"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, mode in DIRS:
            tar.addfile(entry(name + "/", tarfile.DIRTYPE, mode))
        tar.addfile(entry("bin/busybox", tarfile.REGTYPE, 0o755, len(binary)), io.BytesIO(binary))
        for applet in applets:
            link = entry(applet, tarfile.SYMTYPE, 0o777)
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        for name, data in [
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
            ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        ]:
            tar.addfile(entry(name, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    tar_bytes = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), diff_id


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--busybox", default="/bin/busybox")
    p.add_argument("--arch", default="amd64")
    a = p.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    blob, diff_id = busybox_layer(a.busybox)
    layer = {
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": write_blob(a.dir, blob),
        "size": len(blob),
    }
    config = json.dumps({
        "created": CREATED,
        "architecture": a.arch,
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "flotilla demo: busybox-static"}],
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(a.dir, config),
            "size": len(config),
        },
        "layers": [layer],
    }).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": write_blob(a.dir, manifest),
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    }
    with open(os.path.join(a.dir, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(diff_id)


if __name__ == "__main__":
    main()
