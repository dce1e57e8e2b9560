#!/usr/bin/env python3
"""Builds podgraft's test images offline as OCI image layouts and OCI archives.

No registry is reachable, so the images are assembled from Debian's busybox-static and a static pause
binary built from hack/pause.c. Output is deterministic (fixed mtimes, sorted entries), so digests are
stable and re-running is a no-op when nothing changed.

Usage: build-images.py OUT_DIR  ->  OUT_DIR/{pause,busybox}.tar and OUT_DIR/{pause,busybox}/ (layouts)
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BUSYBOX = "/bin/busybox"  # Debian's busybox-static
IMAGES = {
    "pause": "podgraft.test/pause:1",
    "busybox": "podgraft.test/busybox:1",
}


def add_file(tar, name, data, mode=0o755):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar, name, mode=0o755):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    info.mtime = 0
    tar.addfile(info)


def add_link(tar, name, target):
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    info.mtime = 0
    tar.addfile(info)


def busybox_layer():
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ["bin", "etc", "tmp", "root", "var", "var/log"]:
            add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            add_file(tar, "bin/busybox", f.read())
        for applet in sorted(set(applets) - {"busybox"}):
            add_link(tar, f"bin/{applet}", "busybox")
        add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", 0o644)
        add_file(tar, "etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644)
    return buf.getvalue(), {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"}


def pause_layer(workdir):
    binary = os.path.join(workdir, "pause")
    subprocess.run(["gcc", "-static", "-Os", "-s", "-o", binary, os.path.join(HERE, "pause.c")], check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        with open(binary, "rb") as f:
            add_file(tar, "pause", f.read())
    return buf.getvalue(), {"Entrypoint": ["/pause"], "Env": ["PATH=/"], "WorkingDir": "/"}


def write_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def build(out, short, ref, layer, container_config):
    layout = os.path.join(out, short)
    tmp = layout + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "blobs", "sha256"))
    layer_desc = write_blob(tmp, layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created_by": "podgraft hack/build-images.py"}],
    }
    config_desc = write_blob(tmp, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    manifest_desc = write_blob(tmp, json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **manifest_desc,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]},
        }],
    }
    with open(os.path.join(tmp, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)
    with open(os.path.join(tmp, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    shutil.rmtree(layout, ignore_errors=True)
    os.rename(tmp, layout)
    archive = os.path.join(out, short + ".tar")
    with tarfile.open(archive + ".tmp", "w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(layout):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                info = tar.gettarinfo(full, os.path.relpath(full, layout))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(full, "rb") as f:
                    tar.addfile(info, f)
    os.rename(archive + ".tmp", archive)
    print(f"build-images: {ref} -> {archive} ({manifest_desc['digest']})")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        layers = {"pause": pause_layer(work), "busybox": busybox_layer()}
    for short, ref in IMAGES.items():
        layer, config = layers[short]
        build(out, short, ref, layer, config)


if __name__ == "__main__":
    main()
