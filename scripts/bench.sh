#!/usr/bin/env bash
# The benchmark in one command: builds the release binary, seeds the bench
# database when it is empty (or with --reseed), starts the release API on it,
# drives every endpoint at concurrency 1, 8, 32 and 64, prints the table and
# writes it to docs/bench-results.md.
#
#   scripts/bench.sh                      # small preset
#   scripts/bench.sh --preset large --reseed
#   BENCH_DATABASE_URL=postgres://... scripts/bench.sh --duration 10
#
# Needs PostgreSQL (default postgres://postgres@127.0.0.1:5432/mambo_bench; the
# database is dropped and re-created by the seed) and Redis (REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p mambo-cli
exec target/release/mambo bench "$@"
