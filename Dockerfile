# syntax=docker/dockerfile:1
# Container images of the native parts of mcp-guard (the filter itself ships as a .wasm, see
# `make oci`):
#   docker build --target guardctl        -t guardctl:0.1.0 .
#   docker build --target mcp-demo-server -t mcp-demo-server:0.1.0 .
# Used by envoy/docker-compose.yaml and deploy/istio/guardctl.yaml. Both run as non-root users.

# ---- build: the workspace's native binaries, with the versions pinned in Cargo.lock ----------
# guardctl needs Rust >= 1.89 (rusqlite); the builder's Debian release matches the runtime's glibc.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --profile native-release -p guardctl -p mcp-demo-server \
 && install -D -m 0755 target/native-release/guardctl /out/guardctl \
 && install -D -m 0755 target/native-release/mcp-demo-server /out/mcp-demo-server

# ---- guardctl: the control plane ---------------------------------------------------------------
# debian-slim rather than distroless: a shell in the image lets an operator run
# `kubectl exec ... -- guardctl keys list` and inspect the data folder.
FROM debian:bookworm-slim AS guardctl
RUN groupadd --system --gid 10001 guardctl \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/guardctl --shell /usr/sbin/nologin guardctl \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/guardctl
COPY --from=build /out/guardctl /usr/local/bin/guardctl
USER 10001:10001
# `serve` takes these; `guardctl keys ...` inside the container finds the admin token through
# GUARDCTL_ADMIN_TOKEN_FILE and the server at its default http://127.0.0.1:8081.
ENV GUARDCTL_LISTEN=0.0.0.0:8081 \
    GUARDCTL_DB=/var/lib/guardctl/guard.db \
    GUARDCTL_ADMIN_TOKEN_FILE=/var/lib/guardctl/admin-token
VOLUME /var/lib/guardctl
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/guardctl"]
CMD ["serve"]

# ---- mcp-demo-server: the demo MCP upstream ----------------------------------------------------
FROM debian:bookworm-slim AS mcp-demo-server
RUN groupadd --system --gid 10002 mcp \
 && useradd --system --uid 10002 --gid 10002 --no-create-home --shell /usr/sbin/nologin mcp
COPY --from=build /out/mcp-demo-server /usr/local/bin/mcp-demo-server
USER 10002:10002
ENV MCP_DEMO_LISTEN=0.0.0.0:8000
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/mcp-demo-server"]
