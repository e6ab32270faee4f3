#!/usr/bin/env bash
# Fuzzes the running service with its own OpenAPI document (schemathesis): no answer may be a 5xx,
# and every answer's status, content type and body must be the ones /openapi.json describes.
#
# Two runs, each against a sandbox (`serve --sandbox`: built-in Genesys emulator) on a free port with
# its own temporary SQLite file and audit folder. The main run has signature checks OFF
# (VERIFY_SIGNATURES=false): schemathesis cannot sign bodies, and with them on every webhook
# request would stop at the 401 instead of reaching the parsers the fuzzer is for. A short second
# run has them ON and checks that nothing is answered without a signature or the admin token.
#
# Environment: FUZZ_MAX_EXAMPLES (60 per operation), FUZZ_MAX_TIME (120 s), FUZZ_SIGNED_MAX_TIME
# (30 s), FUZZ_SEED (15).
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
  stop_sandbox
  rm -rf "$work"
}
stop_sandbox() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=""
}
trap cleanup EXIT

admin_token="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# The validation webhook takes a shared secret in a header, which schemathesis can send (it cannot sign).
validation_secret="fuzz-validation-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

# Starts a sandbox on a free port with its own SQLite file and audit folder; VERIFY_SIGNATURES as
# given ($1), its log in $work/$2.log. Sets base and server_pid.
start_sandbox() {
  local verify="$1" name="$2"
  # A free port: bind port 0, read what the system gave, let it go.
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  base="http://127.0.0.1:$port"
  env -u HR_WEBHOOK_SECRET \
    LISTEN_ADDR="127.0.0.1:$port" \
    SANDBOX_DATABASE_URL="sqlite://$work/$name.db" \
    AUDIT_DIR="$work/$name-audit" \
    ADMIN_TOKEN="$admin_token" \
    VALIDATION_WEBHOOK_SECRET="$validation_secret" \
    VERIFY_SIGNATURES="$verify" \
    LOG_FORMAT=json \
    RUST_LOG=warn \
    "$binary" serve --sandbox --config config/default.toml >"$work/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "openapi-fuzz: the sandbox exited before answering /healthz:" >&2
      cat "$work/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "openapi-fuzz: no /healthz answer within 30 s" >&2
  exit 1
}

# Fails with the service's log when schemathesis did ($1: its exit status, $2: the log's name).
judge() {
  local status="$1" name="$2"
  if [[ $status -ne 0 ]]; then
    echo "openapi-fuzz: schemathesis found problems in the $name run (exit $status); the service's log:" >&2
    tail -n 50 "$work/$name.log" >&2
    exit "$status"
  fi
  # A 5xx answer is logged as an error even when schemathesis could not see it as one.
  if grep -q '"level":"ERROR"' "$work/$name.log"; then
    echo "openapi-fuzz: the service logged errors during the $name run:" >&2
    grep '"level":"ERROR"' "$work/$name.log" | head -20 >&2
    exit 1
  fi
}

# One worker in both runs: with several, hypothesis parses source in threads and CPython 3.11 fails
# with "AST constructor recursion depth mismatch" (an error of the tool, not of the service).

# Run 1, signatures OFF so the fuzzer reaches the parsers: "no 5xx, every answer as documented"
# (and a 405 with an Allow header for a method an endpoint does not take). Bounded by
# --max-examples per operation and by --max-time.
start_sandbox false unsigned
status=0
"$venv/bin/st" run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance \
  --header "Authorization: Bearer $admin_token" \
  --header "x-validation-secret: $validation_secret" \
  --max-examples "${FUZZ_MAX_EXAMPLES:-60}" \
  --max-time "${FUZZ_MAX_TIME:-120}" \
  --seed "${FUZZ_SEED:-15}" \
  --workers 1 \
  --request-timeout 10 || status=$?
stop_sandbox
judge "$status" unsigned

# Run 2, signatures ON (as in production), short: every webhook must refuse a request without a
# valid signature and every admin route one without the token (ignored_auth), and those refusals
# too must be as documented.
start_sandbox true signed
status=0
"$venv/bin/st" run "$base/openapi.json" \
  --checks ignored_auth,not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --header "Authorization: Bearer $admin_token" \
  --header "x-validation-secret: $validation_secret" \
  --max-examples 5 \
  --max-time "${FUZZ_SIGNED_MAX_TIME:-30}" \
  --seed "${FUZZ_SEED:-15}" \
  --workers 1 \
  --request-timeout 10 || status=$?
stop_sandbox
judge "$status" signed

echo "openapi-fuzz: passed"
