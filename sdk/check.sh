#!/usr/bin/env bash
# The typed TypeScript client: generates types from `mambo openapi` with
# openapi-typescript and type-checks src/usage.ts (an openapi-fetch client)
# against them, so a spec that loses a path, a parameter or a field fails.
#
# An npm that is missing, slow or unreachable skips the check with a warning (a
# registry outage is not a broken spec); a spec or a client that does not
# type-check fails.
set -uo pipefail
cd "$(dirname "$0")"

if ! command -v npm >/dev/null 2>&1; then
  echo "sdk: npm not found; skipping the TypeScript client check"
  exit 0
fi
if ! timeout 300 npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>npm-ci.log; then
  echo "sdk: npm ci failed or took over 5 minutes; skipping the TypeScript client check"
  tail -5 npm-ci.log 2>/dev/null || true
  rm -f npm-ci.log
  exit 0
fi
rm -f npm-ci.log

spec="$(mktemp)"
trap 'rm -f "$spec"' EXIT
if ! (cd .. && cargo run -q -p mambo-cli -- openapi) >"$spec"; then
  echo "sdk: mambo openapi failed"
  exit 1
fi
npx --no-install openapi-typescript "$spec" -o src/schema.d.ts --silent || exit 1
npx --no-install tsc --noEmit -p . || exit 1
echo "sdk: the TypeScript client generated from the spec type-checks"
