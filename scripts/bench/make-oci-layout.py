#!/usr/bin/env python3
"""Writes an OCI image layout for scripts/bench-pull: N layers, each a tar of
one file of random (incompressible) bytes, gzip-compressed, plus an image
config with the layers' diff_ids, tagged `latest`. Random data makes the
transfer the real cost, as it is for already-compressed layers in the wild.

usage: make-oci-layout.py DIR [--layers N] [--mib M] [--arch ARCH]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def write_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest


def layer(index, mib):
    payload = os.urandom(mib * 1024 * 1024)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/layer{index}.bin")
        info.size = len(payload)
        info.mode = 0o644
        info.mtime = 1767225600
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = buf.getvalue()
    diff_id = "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    # Level 1: random bytes do not compress; a higher level only costs time.
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), diff_id


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--mib", type=int, default=40)
    p.add_argument("--arch", default="amd64")
    a = p.parse_args()
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    layers = []
    diff_ids = []
    for i in range(a.layers):
        blob, diff_id = layer(i, a.mib)
        layers.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": write_blob(a.dir, blob),
                "size": len(blob),
            }
        )
        diff_ids.append(diff_id)
    config = json.dumps(
        {
            "created": "2026-01-01T00:00:00Z",
            "architecture": a.arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": write_blob(a.dir, config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": write_blob(a.dir, manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    with open(os.path.join(a.dir, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    total = sum(l["size"] for l in layers)
    print(f"{a.dir}: {a.layers} layers, {total / 1e6:.0f} MB compressed")


if __name__ == "__main__":
    main()
