# syntax=docker/dockerfile:1
# segward's container image (docs/demo.md): a slim Debian runtime running the static binary
# as a non-root user. Used by docker-compose.yml for the sidecars and the `certs` job.
#
# Two targets, one runtime:
#   docker build -t segward .                          # `from-source` (the default, last stage):
#                                                      # built in rust:1-slim-bookworm
#   install -D "$(scripts/build-release.sh)" target/docker/segward
#   docker build --target host-binary -t segward .     # the binary built on the host
# `host-binary` needs no Rust image and no BuildKit: it comes before the build stage, so even
# the legacy builder stops before reaching it. It is how the project's own machines build the
# image (they reach no registry; scripts/docker-base.sh makes debian:bookworm-slim there).
#
# The runtime base is debian:bookworm-slim rather than distroless/cc: the `certs` job runs a
# shell script (deploy/mint-certs.sh) and the HEALTHCHECK needs bash's /dev/tcp, and slim has
# both while adding no HTTP client. The binary is static (glibc linked in; rustls with ring, no
# OpenSSL), so the runtime image only has to provide the files it reads.

# --- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# A fixed numeric UID, so that `runAsNonRoot` and volume ownership can be checked. /certs and
# /ca are created owned by it: a new named volume mounted there (docker-compose.yml) starts
# with this ownership, so the non-root `certs` job can write into it.
RUN groupadd --system --gid 10001 segward \
    && useradd --system --uid 10001 --gid segward --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin segward \
    && install -d -o segward -g segward -m 0755 /certs /ca \
    && install -d -m 0755 /etc/segward

USER 10001:10001
# No GLIBC_TUNABLES: the binary fixes glibc's mmap threshold at 1 MiB itself and gives freed
# heap pages back after each policy build (docs/performance.md, "Fleet-scale policy").

# inbound mTLS, outbound plain HTTP (loopback inside the pod), admin
EXPOSE 8443 15001 9901

# GET /healthz on the admin port (SEGWARD_ADMIN_PORT, default 9901 as in the config's default
# admin.listen), with bash's /dev/tcp: the image carries no curl or wget.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SEGWARD_ADMIN_PORT:-9901} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]

ENTRYPOINT ["segward"]
CMD ["run", "--config", "/etc/segward/segward.yaml"]

# --- the binary scripts/build-release.sh made on the host -------------------------------------
FROM runtime AS host-binary
COPY target/docker/segward /usr/local/bin/segward

# --- build from source --------------------------------------------------------------------------
FROM rust:1-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: editing src/ does not rebuild them. Stub
# targets stand in for the crate (and every bench Cargo.toml declares, read from it) while only the lock file counts.
# scripts/build-release.sh is `cargo build --release --locked --target <this machine>` linked
# statically (static-pie against glibc): the artifact benches/pair.sh measures.
COPY Cargo.toml Cargo.lock ./
COPY scripts scripts
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for bench in $(grep -A1 '^\[\[bench\]\]' Cargo.toml | sed -n 's/^name = "\(.*\)"$/\1/p'); do echo 'fn main() {}' > "benches/$bench.rs"; done \
    && scripts/build-release.sh \
    && rm -rf src benches target/*/release/.fingerprint/segward-*

COPY src src
COPY benches benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    install -D -m 0755 "$(scripts/build-release.sh)" /out/segward

# --- from source (the default target) -----------------------------------------------------------
FROM runtime AS from-source
COPY --from=build /out/segward /usr/local/bin/segward
