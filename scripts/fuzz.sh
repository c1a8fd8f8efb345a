#!/usr/bin/env bash
# Spec-driven fuzzing (issue 11): schemathesis (from PyPI) against the running
# API's /openapi.json, every operation, signed in as a student and as an admin,
# with the checks not_a_server_error, response_schema_conformance and
# status_code_conformance.
#
#   scripts/fuzz.sh                      # starts `mambo dev` on a spare port over its own DB
#   FUZZ_BASE_URL=http://127.0.0.1:8000 scripts/fuzz.sh   # fuzz an API that is already running
#   FUZZ_MAX_EXAMPLES=10 FUZZ_SEED=20261115 scripts/fuzz.sh    # exactly what CI runs (.ci/run)
#   FUZZ_MAX_EXAMPLES=200 scripts/fuzz.sh                  # a longer random run, for local use
#
# Reproducible or random (issue 15). Schemathesis and every library under it
# are pinned in scripts/fuzz-requirements.txt (schemathesis 4.32.5; the venv is
# rebuilt when that file changes). With FUZZ_SEED set, the draw is fixed
# (`--seed`, no example database, one worker): the same code gets the same
# requests, so CI passes or fails because of the code, not the draw. Without
# it every run draws new data (schemathesis prints the seed it picked, so a
# finding can be replayed with FUZZ_SEED=<that seed>); run it locally, longer,
# to find what the CI seed does not reach.
#
# Environment:
#   FUZZ_SEED          fixed seed (CI: 20261115); unset = a random draw
#   FUZZ_MAX_EXAMPLES  examples per operation (bounded mode; default 30)
#   FUZZ_PHASES        schemathesis phases (default examples,coverage,fuzzing)
#   FUZZ_WORKERS       concurrent workers (default 1 with FUZZ_SEED, else 2)
#   FUZZ_PORT          port for the API this script starts (default 8765)
#   FUZZ_DATABASE_URL  database for it (default postgres://postgres@127.0.0.1:5432/mambo_fuzz)
#   FUZZ_REDIS_NAMESPACE  Redis namespace (default fuzz-<time>: fresh rate limits each run)
#   FUZZ_OPTIONAL=1    a pip failure prints a note and exits 0 (for CI without PyPI)
#   FUZZ_REPORT_DIR    where the JUnit reports go (default target/fuzz)
#   FUZZ_STRICT=1      also fail on schemathesis' own internal errors
# The student and admin are the seeded demo accounts (`mambo seed`).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-30}"
PHASES="${FUZZ_PHASES:-examples,coverage,fuzzing}"
PORT="${FUZZ_PORT:-8765}"
DB_URL="${FUZZ_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/mambo_fuzz}"
OUT="${FUZZ_REPORT_DIR:-target/fuzz}"
VENV=target/fuzz/venv
mkdir -p "$OUT" target/fuzz

# 1. schemathesis in a venv under target/, exactly the pinned versions.
REQS=scripts/fuzz-requirements.txt
if [ ! -x "$VENV/bin/schemathesis" ] || ! cmp -s "$REQS" "$VENV/.requirements"; then
  echo "fuzz: installing $(grep -i '^schemathesis==' "$REQS") (pinned in $REQS) into $VENV"
  rm -rf "$VENV"
  if ! { python3 -m venv "$VENV" &&
         "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$REQS" &&
         "$VENV/bin/pip" check; } >"$OUT/pip.log" 2>&1; then
    rm -rf "$VENV"
    if [ "${FUZZ_OPTIONAL:-0}" = 1 ]; then
      echo "fuzz: NOTE: could not install schemathesis from PyPI (see $OUT/pip.log); fuzzing skipped"
      exit 0
    fi
    cat "$OUT/pip.log" >&2
    exit 1
  fi
  cp "$REQS" "$VENV/.requirements"
fi
ST="$VENV/bin/schemathesis"

# 2. An API to fuzz.
API_PID=""
trap 'cleanup' EXIT
FAKES_PID=""
cleanup() {
  for pid in $API_PID $FAKES_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
if [ -z "${FUZZ_BASE_URL:-}" ]; then
  BASE="http://127.0.0.1:$PORT"
  cargo build -q -p mambo-cli
  # A fresh database each run (only the one this script owns).
  if command -v psql >/dev/null 2>&1; then
    psql "${DB_URL%/*}/postgres" -qc "DROP DATABASE IF EXISTS ${DB_URL##*/} WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  # Local stand-ins for Mux, Stripe, Gemini, Google and Resend: no operation
  # answers 503 "not configured" and nothing leaves the machine.
  FAKES_PORT=$((PORT + 1))
  FAKES="http://127.0.0.1:$FAKES_PORT"
  python3 scripts/fuzz_fakes.py "$FAKES_PORT" &
  FAKES_PID=$!
  echo "fuzz: starting the API on $BASE over $DB_URL (fake upstreams on $FAKES)"
  PORT="$PORT" DATABASE_URL="$DB_URL" REDIS_NAMESPACE="${FUZZ_REDIS_NAMESPACE:-fuzz-$(date +%s)}" \
    ENVIRONMENT=development RUST_LOG="${RUST_LOG:-warn}" \
    MUX_TOKEN_ID=fuzz MUX_TOKEN_SECRET=fuzz MUX_WEBHOOK_SECRET=fuzz-webhook \
    MUX_BASE_URL="$FAKES" MUX_STREAM_BASE_URL="$FAKES" \
    STRIPE_SECRET_KEY=sk_test_fuzz STRIPE_WEBHOOK_SECRET=whsec_fuzz STRIPE_BASE_URL="$FAKES" \
    ADVANCED_PRICE_ID=price_advanced PERFORMER_PRICE_ID=price_performer \
    GEMINI_API_KEY=fuzz GEMINI_BASE_URL="$FAKES" AI_RATE_LIMIT_REQUESTS=100000 \
    GOOGLE_CLIENT_ID=fuzz GOOGLE_CLIENT_SECRET=fuzz \
    GOOGLE_TOKEN_URL="$FAKES/token" GOOGLE_USERINFO_URL="$FAKES/userinfo" \
    RESEND_API_KEY=re_fuzz RESEND_BASE_URL="$FAKES" \
    AWS_ACCESS_KEY_ID=fuzz AWS_SECRET_ACCESS_KEY=fuzz AWS_BUCKET_NAME=fuzz \
    AWS_ENDPOINT_URL="$FAKES" \
    ./target/debug/mambo dev >"$OUT/api.log" 2>&1 &
  API_PID=$!
  for _ in $(seq 1 120); do
    curl -fsS "$BASE/health" >/dev/null 2>&1 && break
    if ! kill -0 "$API_PID" 2>/dev/null; then cat "$OUT/api.log" >&2; exit 1; fi
    sleep 1
  done
else
  BASE="$FUZZ_BASE_URL"
fi
curl -fsS "$BASE/health" >/dev/null

login() {
  curl -fsS -X POST "$BASE/api/auth/token" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
STUDENT_TOKEN="$(login student@mamboguild.dev MamboStudent2026)"
ADMIN_TOKEN="$(login admin@mamboguild.dev MamboAdmin2026)"

# 3. Fuzz, once per role.
status=0
if [ -n "${FUZZ_SEED:-}" ]; then
  # A fixed draw: the seed, no examples replayed from earlier runs, and one
  # worker so the requests reach the API in the same order.
  DRAW=(--seed "$FUZZ_SEED" --generation-database none)
  WORKERS="${FUZZ_WORKERS:-1}"
  echo "fuzz: seed $FUZZ_SEED (reproducible)"
else
  DRAW=()
  WORKERS="${FUZZ_WORKERS:-2}"
  echo "fuzz: random draw (the seed is printed below; replay with FUZZ_SEED=<seed>)"
fi
# Sign out everywhere and a password change end the session the fuzzer signs
# in with (every later operation would only see 401): they are left out here and
# tested in tests/tests/sessions.rs.
for role in student admin; do
  if [ "$role" = student ]; then token="$STUDENT_TOKEN"; else token="$ADMIN_TOKEN"; fi
  echo "fuzz: ---- as $role (max $MAX_EXAMPLES examples per operation) ----"
  "$ST" run "$BASE/openapi.json" \
    "${DRAW[@]}" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance \
    --header "Authorization: Bearer $token" \
    --exclude-path /api/auth/logout-all --exclude-path /api/auth/change-password \
    --max-examples "$MAX_EXAMPLES" \
    --phases "$PHASES" \
    --workers "$WORKERS" \
    --request-timeout 20 \
    --suppress-health-check all \
    --no-color \
    --report junit --report-junit-path "$OUT/$role.xml" \
    "$@" || true
  # Failed checks fail the run. Schemathesis' own crashes while generating data
  # ("errors" in its report, e.g. a Hypothesis internal error) are reported but
  # only fail the run with FUZZ_STRICT=1: they are not findings about the API.
  read -r tests failures errors < <(python3 - "$OUT/$role.xml" <<'PY' || echo "0 1 0"
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
print(r.get("tests", 0), r.get("failures", 0), r.get("errors", 0))
PY
)
  echo "fuzz: as $role: $tests operations, $failures failed, $errors schemathesis errors"
  if [ "$failures" != 0 ]; then status=1; fi
  if [ "$errors" != 0 ]; then
    echo "fuzz: NOTE: $errors schemathesis internal error(s) as $role (see the log above)"
    if [ "${FUZZ_STRICT:-0}" = 1 ]; then status=1; fi
  fi
done
if [ "$status" = 0 ]; then
  echo "fuzz: no server errors, no schema or status-code mismatches"
else
  echo "fuzz: FAILURES (see above; JUnit reports in $OUT)"
fi
exit "$status"
