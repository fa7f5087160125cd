# syntax=docker/dockerfile:1
# Multi-stage build of the oneclick service.
#   docker build -t oneclick:local .        (docker-compose.yml does this)
# Needs a Docker engine; on engine-less machines scripts/check-deploy lints this file instead.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# pq-sys links libpq; pkg-config finds it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin oneclick \
 && install -m 0755 target/release/oneclick /usr/local/bin/oneclick

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin oneclick
WORKDIR /app
COPY --from=build /usr/local/bin/oneclick /usr/local/bin/oneclick
# config/base.toml is read relative to the working directory; env ONECLICK__SECTION__KEY overrides.
COPY config ./config
COPY migrations ./migrations
ENV ONECLICK__HTTP__LISTEN=0.0.0.0:9090
EXPOSE 9090
USER 10001:10001
# /health over bash's /dev/tcp: no curl or wget in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=6 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9090 && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# `oneclick serve` drains and exits 0 on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/oneclick"]
CMD ["serve"]
