#!/bin/sh
# lint_openapi.sh - proto/openapi.yaml passes Redocly's lint with no error and
# no warning (tools/redocly.yaml: recommended-strict). The linter is the one
# `make deps` installs (tools/install.sh). Prints TAP.
cd "$(dirname "$0")/../.." || exit 1
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_UPDATE_NOTIFIER=1
bin=""
for d in tools tools/node18; do
    [ -x "$d/node_modules/.bin/redocly" ] && { bin="$d/node_modules/.bin/redocly"; break; }
done
echo "1..1"
if [ -z "$bin" ]; then
    echo "not ok 1 - redocly lint proto/openapi.yaml # redocly is not installed: run make deps"
    exit 1
fi
out=$("$bin" lint --config tools/redocly.yaml proto/openapi.yaml 2>&1)
rc=$?
echo "$out" | grep -v '[║╔╚]' | sed 's/^/# /'
if [ "$rc" -eq 0 ]; then
    echo "ok 1 - redocly lint proto/openapi.yaml ($("$bin" --version 2>/dev/null | head -n 1))"
else
    echo "not ok 1 - redocly lint proto/openapi.yaml (exit $rc)"
fi
exit "$rc"
