#!/usr/bin/env bash
# Known security advisories in Cargo.lock (issues 11 and 26): `cargo audit`
# against the RustSec advisory database. Runs in CI (.ci/run) and never skips:
#
#   scripts/audit.sh                 # audit Cargo.lock
#   AUDIT_DB_SNAPSHOT=DIR scripts/audit.sh   # another offline copy of the database
#
# 1. cargo-audit: used when on PATH, else installed with
#    `cargo install cargo-audit --locked` (about 15 minutes on 2 cores). A
#    failed install fails the script.
# 2. The database: first cargo-audit's own fetch of the upstream database into
#    ~/.cargo/advisory-db. When that cannot be fetched (no network but the
#    package registries), the offline snapshot at ../shared/advisory-db (beside
#    the repo, as in CI's fresh clone; its SNAPSHOT file names the upstream
#    commit) is used with `--db DIR --no-fetch`. No database at all fails the
#    script. The database used (commit or snapshot id) is printed.
# 3. Exit status: non-zero on any vulnerability advisory that applies to
#    Cargo.lock (cargo-audit's default). Informational advisories -
#    unmaintained, unsound - and yanked crates are ALLOWED: cargo-audit prints
#    them as warnings and exits 0 for them (no `--deny`), since they are not a
#    known vulnerability and often have no drop-in replacement.
#
# Accepted advisories (printed on every run, applied only while their
# conditions below hold, otherwise the audit fails on them again):
#   RUSTSEC-2026-0194, RUSTSEC-2026-0195 - quick-xml < 0.41, quadratic-time
#   attribute checks and unbounded namespace allocation when parsing XML.
#   quick-xml 0.36 comes in through poem-openapi 5.1.16 and poem 3.1.12 (the
#   newest releases): poem-openapi depends on quick-xml and on poem's `xml`
#   feature unconditionally, so there is no feature to drop and no release to
#   upgrade to. Unreachable here: poem parses XML only for an `Xml` payload or
#   extractor (or Body::into_xml), and this API declares none - every request
#   body is JSON or multipart; an XML body is refused
#   with a 4xx before any parsing (tests/tests/hostile_input.rs).
#   Conditions checked: (a) only poem and poem-openapi depend on quick-xml
#   < 0.41 in Cargo.lock, (b) no server crate source (core, api, worker, cli)
#   names Xml/quick_xml, (c) the committed openapi.json (equal to the served
#   spec, tests/tests/operations.rs) has no XML media type. Drop the ignore
#   when `cargo update -p poem-openapi -p poem` brings quick-xml >= 0.41.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- 1. cargo-audit ---------------------------------------------------------
if ! command -v cargo-audit >/dev/null 2>&1; then
  echo "audit: cargo-audit not found; installing it (cargo install cargo-audit --locked)"
  # Built in cargo's own temporary directory, not a shared CARGO_TARGET_DIR.
  if ! env -u CARGO_TARGET_DIR cargo install cargo-audit --locked >"$tmp/install.log" 2>&1; then
    tail -n 40 "$tmp/install.log"
    echo "audit: FAILED: cargo install cargo-audit --locked did not succeed"
    exit 1
  fi
  if ! command -v cargo-audit >/dev/null 2>&1; then
    echo "audit: FAILED: cargo-audit installed but not on PATH (is \$CARGO_HOME/bin on PATH?)"
    exit 1
  fi
fi
echo "audit: $(cargo audit --version)"

# --- accepted advisories (see the header) ------------------------------------
ignores=()
# The quick-xml versions in Cargo.lock.
qx_versions=$(awk '/^name = "quick-xml"$/ { getline; gsub(/version = |"/, ""); print }' Cargo.lock)
old_qx=()
for v in $qx_versions; do
  if [ "$(printf '%s\n0.41.0\n' "$v" | sort -V | head -n 1)" != 0.41.0 ]; then old_qx+=("$v"); fi
done
if [ "${#old_qx[@]}" -gt 0 ]; then
  why=""
  for v in "${old_qx[@]}"; do
    users=$(cargo tree --locked -q --target all -e normal,build,dev -i "quick-xml@$v" \
      --depth 1 --prefix none --format '{p}' 2>"$tmp/tree.err" | awk 'NR > 1 { print $1 }' | sort -u)
    if [ -z "$users" ]; then
      why="cargo tree -i quick-xml@$v failed: $(head -n 3 "$tmp/tree.err")"
    elif [ -n "$(grep -vxE 'poem|poem-openapi' <<<"$users")" ]; then
      why="quick-xml $v is also used by: $(grep -vxE 'poem|poem-openapi' <<<"$users" | tr '\n' ' ')"
    fi
  done
  if hits=$(grep -rnE '\bXml\b|quick_xml|into_xml|from_xml' core/src api/src worker/src cli/src); then
    why="server sources use XML: $(head -n 3 <<<"$hits")"
  fi
  if grep -qE '"(application|text)/([A-Za-z0-9.-]+\+)?xml(;[^"]*)?"[[:space:]]*:' openapi.json; then
    why="openapi.json declares an XML media type"
  fi
  if [ -z "$why" ]; then
    ignores+=(--ignore RUSTSEC-2026-0194 --ignore RUSTSEC-2026-0195)
    echo "audit: ACCEPTED RUSTSEC-2026-0194, RUSTSEC-2026-0195 (quick-xml ${old_qx[*]}, via poem/poem-openapi only; this API parses no XML; see scripts/audit.sh)"
  else
    echo "audit: NOT accepting RUSTSEC-2026-0194/0195 for quick-xml ${old_qx[*]}: $why"
  fi
fi

# --- 2. the database and the audit -------------------------------------------
netdb="${CARGO_HOME:-$HOME/.cargo}/advisory-db"
echo "audit: fetching the advisory database into $netdb"
timeout "${AUDIT_FETCH_TIMEOUT:-300}" cargo audit --db "$netdb" "${ignores[@]}" "$@" >"$tmp/net.log" 2>&1
rc=$?
if [ "$rc" != 124 ] && ! grep -qE "couldn't fetch advisory database|error loading advisory database" "$tmp/net.log"; then
  cat "$tmp/net.log"
  rev=$(git -C "$netdb" log -1 --format='%H %cI' 2>/dev/null || echo unknown)
  echo "audit: database: upstream (fetched), commit $rev"
  if [ "$rc" = 0 ]; then
    echo "audit: OK: no vulnerability advisories apply"
    exit 0
  fi
  echo "audit: FAILED: vulnerability advisories found (see above), or cargo audit failed (exit $rc)"
  exit 1
fi
if [ "$rc" = 124 ]; then
  echo "audit: fetching the advisory database timed out"
else
  grep -E "couldn't fetch|error loading" "$tmp/net.log" | head -n 2
fi

snap="${AUDIT_DB_SNAPSHOT:-$root/../shared/advisory-db}"
if [ ! -d "$snap/crates" ]; then
  echo "audit: FAILED: the advisory database could not be fetched and there is no offline snapshot at $snap"
  exit 1
fi
snap=$(cd "$snap" && pwd)
snap_id=$(head -n 1 "$snap/SNAPSHOT" 2>/dev/null || echo "no SNAPSHOT file")
echo "audit: database: offline snapshot $snap ($snap_id)"
cargo audit --db "$snap" --no-fetch "${ignores[@]}" "$@" 2>&1
rc=$?
echo "audit: database used: offline snapshot ($snap_id)"
if [ "$rc" = 0 ]; then
  echo "audit: OK: no vulnerability advisories apply"
  exit 0
fi
echo "audit: FAILED: vulnerability advisories found (see above), or cargo audit failed (exit $rc)"
exit 1
