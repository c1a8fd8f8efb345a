# syntax=docker/dockerfile:1
# Multi-stage build: compile `mambo` (API, worker, migrations and CLI in one
# binary; migrations and email templates are compiled in), then copy it alone
# into a slim Debian image that runs as an unprivileged user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release -p mambo-cli \
    && cp target/release/mambo /usr/local/bin/mambo

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home mambo
COPY --from=build /usr/local/bin/mambo /usr/local/bin/mambo
USER mambo
ENV HOST=0.0.0.0 PORT=8000 LOG_FORMAT=json
EXPOSE 8000
# `mambo api` by default; the compose file and the Procfile pick `worker` and
# `migrate` with the same image.
CMD ["mambo", "api"]
