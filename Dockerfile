# genesys-provisioner: a small runtime image with the one binary.
# Build: docker build -t genesys-provisioner .
# Run:   cp deploy/container.env.example deploy/container.env   # then fill in the secrets
#        docker run -p 3000:3000 --env-file deploy/container.env --stop-timeout 30 \
#          -v provisioner-data:/app/data -v provisioner-audit:/app/logs/audit genesys-provisioner
# Stop:  docker stop -t 30 <container>   (Docker's default 10 s is shorter than the service's
#        shutdown: queue.shutdown_grace_secs = 20 for running jobs, plus the HTTP drain)
# Do not pass the local-development .env: its LISTEN_ADDR=127.0.0.1:3000 makes the service unreachable
# from outside the container (the health check below then fails, as it should). docs/operations.md.

# Fully qualified names: Podman and CRI-O refuse or ask about short names, and they say which
# registry is meant.
FROM docker.io/library/rust:1.95-slim-bookworm AS build
# aws-lc-sys (TLS) needs a C toolchain and cmake.
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The release profile keeps line tables for local profiling and benches; the image does not need
# them nor the symbol table (109 MB -> a stripped binary). Set here, not in Cargo.toml, so local
# release builds keep `debug = "line-tables-only"`.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# The production binary: without the `sandbox` feature, so it holds no emulator code (no
# `serve --sandbox`, no `emulator` subcommand). The emulator crate is still a workspace member, so
# its manifest must be there for cargo to read the workspace; it is not compiled.
# Dependencies first, so code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates/genesys-emulator/Cargo.toml crates/genesys-emulator/
RUN mkdir -p src benches tests/it crates/genesys-emulator/src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/intake.rs && echo 'fn main() {}' > benches/provision.rs && echo 'fn main() {}' > benches/sync.rs && touch tests/it/main.rs \
    && echo 'fn main() {}' > crates/genesys-emulator/src/main.rs && touch crates/genesys-emulator/src/lib.rs \
    && cargo build --release --locked --no-default-features && rm -rf src crates/genesys-emulator/src
COPY src src
COPY crates crates
COPY migrations migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --no-default-features

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 provisioner \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin provisioner
WORKDIR /app
COPY --from=build /src/target/release/genesys-provisioner /usr/local/bin/genesys-provisioner
COPY deploy/container-healthcheck.sh /usr/local/bin/container-healthcheck
COPY config config
RUN mkdir -p data logs/audit && chown -R 10001:10001 data logs
# Numeric, so Kubernetes `runAsNonRoot` can verify it without reading /etc/passwd.
USER 10001:10001
# These settings belong to the image: the container env file (deploy/container.env.example) does not
# set them. PROVISIONER_ENV_FILE=none: a stray .env in /app is never read.
ENV LISTEN_ADDR=0.0.0.0:3000 \
    DATABASE_URL=sqlite:///app/data/provisioner.db?mode=rwc \
    AUDIT_DIR=/app/logs/audit \
    LOG_FORMAT=json \
    PROVISIONER_CONFIG=/app/config/default.toml \
    PROVISIONER_ENV_FILE=none
VOLUME ["/app/data", "/app/logs/audit"]
EXPOSE 3000
# GET /healthz on the container's own address, not loopback (see deploy/container-healthcheck.sh).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["container-healthcheck"]
# SIGTERM starts the graceful shutdown (stop accepting, answer requests in flight, let running jobs
# finish for queue.shutdown_grace_secs); give it `docker stop -t 30` / terminationGracePeriodSeconds: 30.
STOPSIGNAL SIGTERM
ENTRYPOINT ["genesys-provisioner"]
CMD ["serve"]
