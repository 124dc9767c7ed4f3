# syntax=docker/dockerfile:1

# Build stage: compile the release binary. The cache mounts keep the crate registry and the
# target folder between builds; the binary is copied out in the same step.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && cp target/release/token-exchange /usr/local/bin/token-exchange

# Runtime stage: the binary, CA certificates for TLS to upstreams, and an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 token-exchange \
    && useradd --system --uid 10001 --gid token-exchange --home-dir /app --shell /usr/sbin/nologin token-exchange \
    && install -d -o token-exchange -g token-exchange /app
COPY --from=builder /usr/local/bin/token-exchange /usr/local/bin/token-exchange

# The default SQLite database (data/token-exchange.db) is created below this folder.
WORKDIR /app
USER 10001:10001
ENV TOKEN_EXCHANGE__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["token-exchange", "serve"]
