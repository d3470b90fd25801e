#!/usr/bin/env bash
# Fills in the placeholders of deploy/istio/ and writes the result to OUT (default target/istio):
#   tools/render-istio.sh REGISTRY DIGEST [OUT]
# REGISTRY is where the images were pushed (e.g. registry.example.com/platform), DIGEST the
# manifest digest `make oci` printed (with or without `sha256:`).
set -euo pipefail
cd "$(dirname "$0")/.."

registry=${1:?usage: tools/render-istio.sh REGISTRY DIGEST [OUT]}
digest=${2:?usage: tools/render-istio.sh REGISTRY DIGEST [OUT]}
out=${3:-target/istio}
digest=${digest#sha256:}
if [[ ! "$digest" =~ ^[0-9a-f]{64}$ ]]; then
  echo "error: DIGEST must be a sha256 digest (64 lowercase hex characters), got '$2'" >&2
  exit 1
fi
if [[ ! "$registry" =~ ^[A-Za-z0-9._:/-]+$ || "$registry" == */ ]]; then
  echo "error: REGISTRY must look like host[:port]/path without a trailing slash, got '$registry'" >&2
  exit 1
fi

rm -rf "$out"
mkdir -p "$out"
(cd deploy/istio && find . -name '*.yaml' -print) | while read -r file; do
  mkdir -p "$out/$(dirname "$file")"
  sed -e "s|\${MCP_GUARD_REGISTRY}|$registry|g" -e "s|\${MCP_GUARD_DIGEST}|$digest|g" \
    "deploy/istio/$file" >"$out/$file"
done
if grep -rn '\${MCP_GUARD_' "$out"; then
  echo "error: placeholders left in $out" >&2
  exit 1
fi
echo "wrote $out (image oci://$registry/mcp-guard@sha256:$digest); apply with: kubectl apply -k $out"
