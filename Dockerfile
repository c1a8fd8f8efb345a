FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p mambo-cli

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/mambo /usr/local/bin/mambo
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
CMD ["mambo", "api"]
