#!/usr/bin/env bash
# The production build (`--no-default-features`, as the Dockerfile builds it) holds no emulator
# code: not one symbol of the genesys_emulator crate in its binary. The default build (the
# `sandbox` feature) must have them, or this check could never fail.
# Both builds use the one target/ directory, where cargo keeps each feature set's library apart, so
# a second run rebuilds little. The default build comes last: the binary left in target/debug is
# the one the rest of CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nm >/dev/null; then
  apt-get install -y -q binutils >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q binutils >/dev/null; }
fi

bin=target/debug/genesys-provisioner
emulator_symbols() { nm "$bin" | grep -c genesys_emulator || true; }

# Its warnings fail too: clippy runs on the default features only, and cargo replays a cached
# build's warnings, so none hides in the code the feature switches off.
log=$(cargo build --locked --no-default-features --bin genesys-provisioner 2>&1) || { echo "$log" >&2; exit 1; }
if grep -q '^warning' <<<"$log"; then
  echo "$log" >&2
  echo "the build without the sandbox feature has warnings" >&2
  exit 1
fi
found=$(emulator_symbols)
if [ "$found" -ne 0 ]; then
  echo "the build without the sandbox feature has $found genesys_emulator symbols; it must have none" >&2
  exit 1
fi
# And what it has instead: `serve --sandbox` says why it cannot, `emulator` is no subcommand.
if out=$(PROVISIONER_ENV_FILE=none "$bin" serve --sandbox --config config/default.toml 2>&1) \
  || [[ "$out" != *"without the \`sandbox\` cargo feature"* ]]; then
  echo "serve --sandbox without the sandbox feature did not refuse, saying why: $out" >&2
  exit 1
fi
if "$bin" emulator --help >/dev/null 2>&1; then
  echo "the build without the sandbox feature still has the emulator subcommand" >&2
  exit 1
fi

cargo build --locked --bin genesys-provisioner
found=$(emulator_symbols)
if [ "$found" -eq 0 ]; then
  echo "the default build has no genesys_emulator symbols: this check would not notice them either" >&2
  exit 1
fi
echo "no emulator code without the sandbox feature ($found genesys_emulator symbols with it)"
