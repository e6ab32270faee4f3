#!/bin/sh
# Container health check: GET /healthz on the container's own network address, the way traffic from
# outside reaches the service, not over loopback. A service that binds 127.0.0.1 inside the container
# (LISTEN_ADDR=127.0.0.1:3000 from a local-development .env) answers on loopback but not on the
# published port; checking over loopback would stay green while no request can reach it.
# The port is LISTEN_ADDR's (the image sets 0.0.0.0:3000).
set -eu
port="${LISTEN_ADDR:-0.0.0.0:3000}"
port="${port##*:}"
# The first address that is not loopback (`hostname -I` lists them; the hostname package is part of
# the Debian base image).
addr=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -v -e '^127\.' -e '^::1$' -e '^$' | head -n 1 || true)
if [ -z "$addr" ]; then
    echo "container-healthcheck: the container has no network address besides loopback" >&2
    exit 1
fi
case "$addr" in
    *:*) addr="[$addr]" ;;
esac
exec genesys-provisioner healthcheck --url "http://$addr:$port/healthz"
