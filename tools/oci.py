#!/usr/bin/env python3
"""Package mcp_guard.wasm as an OCI image layout that Istio (and istio-agent's EnvoyFilter remote
fetch) can pull: `make oci` writes target/oci/ and prints the manifest digest to pin.

Format: the *compat* variant of the Wasm image specification, which is what istio's pkg/wasm
reads most widely (every Istio release with WasmPlugin):

  manifest  application/vnd.oci.image.manifest.v1+json, annotation module.wasm.image/variant=compat
  config    application/vnd.oci.image.config.v1+json (os wasip1, architecture wasm, rootfs diff_id)
  layer     application/vnd.oci.image.layer.v1.tar+gzip, exactly one, holding `plugin.wasm`

Istio's fetcher does not accept the CNCF artifact media type application/vnd.wasm.content.layer.v1+wasm
(it knows only the compat layer types above and the older two-layer
application/vnd.module.wasm.content.layer.v1+wasm variant), so that variant is not used.

Reproducible: the same module bytes give the same blobs and the same manifest digest. The tar
entry has fixed metadata (mtime 0, uid/gid 0, no user names, mode 0644), the gzip header has no
name and mtime 0, the JSON documents have sorted keys and no whitespace, and nothing records the
build time. The tag lives only in index.json, which is not part of the manifest digest.

Standard library only; no network.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tomllib
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
PLUGIN_FILE = "plugin.wasm"
WASM_MAGIC = b"\0asm"


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(module: bytes) -> bytes:
    """An uncompressed tar holding only plugin.wasm, with fixed metadata."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size = len(module)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.type = tarfile.REGTYPE
        tar.addfile(info, io.BytesIO(module))
    return out.getvalue()


def gzip_fixed(data: bytes) -> bytes:
    out = io.BytesIO()
    # filename="" and mtime=0: the gzip header carries neither a name nor a time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return out.getvalue()


def descriptor(media_type: str, blob: bytes) -> dict:
    return {"mediaType": media_type, "digest": sha256(blob), "size": len(blob)}


def build(module: bytes, tag: str) -> tuple[dict[str, bytes], bytes, bytes]:
    """Returns (blobs by digest, manifest bytes, index.json bytes)."""
    if not module.startswith(WASM_MAGIC):
        raise SystemExit("oci.py: the module does not start with the wasm magic number")
    tar = layer_tar(module)
    layer = gzip_fixed(tar)
    config = canonical_json(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": descriptor(CONFIG_TYPE, config),
            "layers": [descriptor(LAYER_TYPE, layer)],
            "annotations": {
                "module.wasm.image/variant": "compat",
                "org.opencontainers.image.title": "mcp-guard",
            },
        }
    )
    index_entry = descriptor(MANIFEST_TYPE, manifest)
    index_entry["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = canonical_json({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [index_entry]})
    blobs = {sha256(blob): blob for blob in (layer, config, manifest)}
    return blobs, manifest, index


def package_version(repo: Path) -> str:
    with open(repo / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["package"]["version"]


def write_layout(out: Path, blobs: dict[str, bytes], index: bytes) -> None:
    if out.exists():
        # Only ever delete something that is an OCI layout (or an empty folder).
        if any(out.iterdir()) and not (out / "oci-layout").is_file():
            raise SystemExit(f"oci.py: {out} exists and is not an OCI image layout; not replacing it")
        shutil.rmtree(out)
    (out / "blobs" / "sha256").mkdir(parents=True)
    for digest, blob in sorted(blobs.items()):
        (out / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(blob)
    (out / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(index)


def main() -> int:
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", type=Path, default=repo / "target/wasm32-wasip1/release/mcp_guard.wasm")
    parser.add_argument("--out", type=Path, default=repo / "target/oci")
    parser.add_argument("--tag", help="tag recorded in index.json (default: the crate version)")
    args = parser.parse_args()

    module = args.wasm.read_bytes()
    tag = args.tag or package_version(repo)
    blobs, manifest, index = build(module, tag)
    write_layout(args.out, blobs, index)
    digest = sha256(manifest)
    print(f"OCI image layout {os.path.relpath(args.out)} (Wasm image, compat variant: plugin.wasm in one tar+gzip layer)")
    print(f"  module          {os.path.relpath(args.wasm)} ({len(module)} bytes, {sha256(module)})")
    print(f"  tag             {tag}   (skopeo: oci:{os.path.relpath(args.out)}:{tag})")
    print(f"manifest digest: {digest}")
    print(f"  pin it as       oci://<registry>/mcp-guard@{digest}   (and sha256: {digest.removeprefix('sha256:')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
