#!/usr/bin/env bash
# `make test-oci`: round trip of the OCI image layout from `make oci` through a real registry.
# Starts Debian's docker-registry (distribution 2.8) on a free loopback port with its storage in a
# temporary folder, pushes target/oci with skopeo, inspects it there, pulls it back into a new
# layout, and checks that the manifest digest and the extracted plugin.wasm are unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYOUT=${LAYOUT:-target/oci}
WASM=${WASM:-target/wasm32-wasip1/release/mcp_guard.wasm}
tag=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$LAYOUT/index.json")
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$LAYOUT/index.json")

work=$(mktemp -d "${TMPDIR:-/tmp}/mcp-guard-test-oci.XXXXXX")
registry_pid=""
cleanup() {
  if [[ -n "$registry_pid" ]]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $work/storage
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 100); do
  if python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "http://127.0.0.1:$port/v2/" 2>/dev/null; then break; fi
  kill -0 "$registry_pid" 2>/dev/null || { cat "$work/registry.log" >&2; exit 1; }
  sleep 0.1
done

ref="127.0.0.1:$port/mcp-guard:$tag"
echo "push  oci:$LAYOUT:$tag -> docker://$ref"
skopeo copy --quiet --preserve-digests --dest-tls-verify=false "oci:$LAYOUT:$tag" "docker://$ref"

echo "inspect docker://$ref"
inspected=$(skopeo inspect --tls-verify=false "docker://$ref")
remote_digest=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])' <<<"$inspected")
python3 - "$inspected" <<'EOF'
import json, sys
info = json.loads(sys.argv[1])
print(f"  Digest {info['Digest']}  Os {info.get('Os')}  Architecture {info.get('Architecture')}  layers {info['Layers']}")
EOF
raw_digest=$(skopeo inspect --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)

echo "pull  docker://$ref -> oci:$work/back:$tag"
skopeo copy --quiet --preserve-digests --src-tls-verify=false "docker://$ref" "oci:$work/back:$tag"

python3 - "$LAYOUT" "$work/back" "$WASM" "$digest" "$remote_digest" "sha256:$raw_digest" <<'EOF'
import gzip, hashlib, io, json, sys, tarfile
layout, back, wasm, digest, remote, raw = sys.argv[1:]
def fail(msg):
    sys.exit(f"test-oci: FAIL: {msg}")
if remote != digest:
    fail(f"registry digest {remote} != layout digest {digest}")
if raw != digest:
    fail(f"registry manifest bytes hash to {raw}, not {digest}")
index = json.load(open(f"{back}/index.json"))
back_digest = index["manifests"][0]["digest"]
if back_digest != digest:
    fail(f"pulled-back digest {back_digest} != {digest}")
def blob(d):
    data = open(f"{back}/blobs/sha256/{d.removeprefix('sha256:')}", "rb").read()
    if "sha256:" + hashlib.sha256(data).hexdigest() != d:
        fail(f"blob {d} does not match its digest")
    return data
manifest = json.loads(blob(back_digest))
layers = manifest["layers"]
if len(layers) != 1:
    fail(f"{len(layers)} layers")
with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layers[0]["digest"])))) as tar:
    module = tar.extractfile("plugin.wasm").read()
if module != open(wasm, "rb").read():
    fail("plugin.wasm pulled back differs from the module")
print(f"ok: digest {digest} unchanged through the registry; plugin.wasm ({len(module)} bytes) identical")
EOF
