#!/usr/bin/env bash
# Fuzzes the running service with its own OpenAPI document (schemathesis): no answer may be a 5xx,
# and every answer's status, content type and body must be the ones /openapi.json describes.
#
# A sandbox (`serve --sandbox`: built-in Genesys emulator) runs on a free port with its own temporary
# SQLite file and audit folder. Signature checks are OFF for this run (VERIFY_SIGNATURES=false):
# schemathesis cannot sign bodies, and with them on every webhook request would stop at the 401
# instead of reaching the parsers the fuzzer is for. The signature checks have their own tests.
#
# Usage: .ci/openapi-fuzz.sh [path to the genesys-provisioner binary]  (default: target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${1:-target/debug/genesys-provisioner}"
if [[ ! -x "$binary" ]]; then
  echo "openapi-fuzz: no binary at $binary (run cargo build first)" >&2
  exit 1
fi

for tool in python3 curl; do
  command -v "$tool" >/dev/null || { echo "openapi-fuzz: $tool is needed and missing; failing instead of skipping" >&2; exit 1; }
done

# schemathesis from the pinned requirements, in a venv of its own; a failed install fails the run.
venv=.ci/venv
requirements=.ci/requirements-schemathesis.txt
if [[ ! -x "$venv/bin/st" ]] || ! cmp -s "$requirements" "$venv/requirements.installed"; then
  echo "openapi-fuzz: installing $requirements into $venv"
  python3 -m venv "$venv" || { echo "openapi-fuzz: cannot create the venv $venv; failing instead of skipping" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check --require-virtualenv -r "$requirements"
  cp "$requirements" "$venv/requirements.installed"
fi
if [[ ! -x "$venv/bin/st" ]]; then
  echo "openapi-fuzz: schemathesis is not installed in $venv; failing instead of skipping" >&2
  exit 1
fi
"$venv/bin/st" --version

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# A free port: bind port 0, read what the system gave, let it go.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
admin_token="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

LISTEN_ADDR="127.0.0.1:$port" \
  SANDBOX_DATABASE_URL="sqlite://$work/fuzz.db" \
  AUDIT_DIR="$work/audit" \
  ADMIN_TOKEN="$admin_token" \
  VERIFY_SIGNATURES=false \
  LOG_FORMAT=json \
  RUST_LOG=warn \
  "$binary" serve --sandbox --config config/default.toml >"$work/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 300); do
  curl -fsS "$base/healthz" >/dev/null 2>&1 && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "openapi-fuzz: the sandbox exited before answering /healthz:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null || { echo "openapi-fuzz: no /healthz answer within 30 s" >&2; exit 1; }

# The checks of "no 5xx, every answer as documented" (and a 405 with an Allow header for a method
# an endpoint does not take). The run is bounded by --max-examples per operation and by --max-time. One worker: with several, hypothesis parses source in threads and
# CPython 3.11 fails with "AST constructor recursion depth mismatch" (an error of the tool, not of us).
status=0
"$venv/bin/st" run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance \
  --header "Authorization: Bearer $admin_token" \
  --max-examples "${FUZZ_MAX_EXAMPLES:-60}" \
  --max-time "${FUZZ_MAX_TIME:-120}" \
  --seed "${FUZZ_SEED:-15}" \
  --workers 1 \
  --request-timeout 10 \
  --report junit --report-dir "$work/report" || status=$?

# The admin routes must refuse a request without the token (the webhooks cannot be checked so:
# their signatures are off in this run).
if [[ $status -eq 0 ]]; then
  "$venv/bin/st" run "$base/openapi.json" \
    --include-tag admin \
    --checks ignored_auth \
    --header "Authorization: Bearer $admin_token" \
    --max-examples 5 \
    --max-time 30 \
    --seed "${FUZZ_SEED:-15}" \
    --workers 1 \
    --request-timeout 10 || status=$?
fi

if [[ $status -ne 0 ]]; then
  echo "openapi-fuzz: schemathesis found problems (exit $status); the service's log:" >&2
  tail -n 50 "$work/server.log" >&2
  exit "$status"
fi
# A 5xx answer is logged as an error even when schemathesis could not see it as one.
if grep -q '"level":"ERROR"' "$work/server.log"; then
  echo "openapi-fuzz: the service logged errors during the run:" >&2
  grep '"level":"ERROR"' "$work/server.log" | head -20 >&2
  exit 1
fi
echo "openapi-fuzz: passed"
