# shoal-server container image (multi-stage): build with cargo, run on a small Debian base.
#
#   docker build -t shoal .
#   docker run --rm -p 6379:6379 -p 26379:26379 -v shoal-data:/data shoal
#
# The image runs one node: clients on 6379, peers on 16379, HTTP (/metrics, /readyz, the
# status page) on 26379, state under /data. Give other nodes `--join <first-node>:16379` and
# every node `--cluster-announce-ip <its address>` (see deploy/compose.yaml and deploy/k8s/).
# On a machine without base images or a registry, scripts/compose-test.sh builds the same
# runtime image FROM scratch around a statically linked binary (deploy/Dockerfile.scratch).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p shoal-server --bin shoal-server \
    && cp target/release/shoal-server /shoal-server

FROM debian:bookworm-slim
COPY --from=build /shoal-server /usr/local/bin/shoal-server
VOLUME /data
EXPOSE 6379 16379 26379
# Clients of a container never come from its loopback, so protected mode (on by default, as
# in Redis) would refuse them all; as the official Redis image does, it is off here: set
# requirepass or ACL users (and --cluster-secret) for a real deployment.
ENTRYPOINT ["/usr/local/bin/shoal-server", "--bind", "0.0.0.0", "--data-dir", "/data", "--port", "6379", "--http-port", "26379", "--protected-mode", "no"]
