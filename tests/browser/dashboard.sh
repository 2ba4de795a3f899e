#!/bin/sh
# dashboard.sh - the page at / in a real browser (TAP for tests/run_tests.sh):
# Debian's chromium, headless, driven over the DevTools protocol by npm's
# puppeteer-core (tools/node_modules, `make deps`; it downloads no browser)
# against a real d2nwgd with tokens on. dashboard.cjs says what is checked;
# screenshots of each view go to BUILD/test-logs/browser/. Skipped, by name,
# only where chromium is not installed.
cd "$(dirname "$0")/../.." || exit 1
B=${D2NWG_BUILD:-build}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
if [ -z "$CHROMIUM" ]; then
    echo "1..1"
    echo "ok 1 - dashboard in chromium # SKIP chromium is not installed (make deps installs it)"
    exit 0
fi
mod=""
for d in tools tools/node18; do
    [ -f "$d/node_modules/puppeteer-core/package.json" ] && { mod="$PWD/$d/node_modules"; break; }
done
if [ -z "$mod" ]; then
    echo "1..1"
    echo "not ok 1 - dashboard in chromium # puppeteer-core is not installed: run make deps"
    exit 1
fi
gen=$(sh tests/fixture.sh "$B") || { echo "1..1"; echo "not ok 1 - the quick generator"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/d2nwg-browser.XXXXXX")
shots="$B/test-logs/browser"
mkdir -p "$shots"
printf 'browser-test-write-token write ui-writer\nbrowser-test-read-token read ui-reader\n' >"$tmp/tokens"
"$B/d2nwgd" --generator "$gen" --listen 127.0.0.1:0 --port-file "$tmp/port" --data "$tmp/data" \
    --tokens "$tmp/tokens" 2>"$tmp/d2nwgd.log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
port=$(cat "$tmp/port" 2>/dev/null)
rc=1
if [ -n "$port" ]; then
    NODE_PATH="$mod" CHROMIUM="$CHROMIUM" D2NWG_URL="http://127.0.0.1:$port" SHOTS="$shots" \
        WRITE_TOKEN=browser-test-write-token READ_TOKEN=browser-test-read-token \
        timeout 300 node tests/browser/dashboard.cjs
    rc=$?
else
    echo "1..1"
    echo "not ok 1 - d2nwgd did not start"
fi
kill -TERM "$pid" 2>/dev/null
wait "$pid"
code=$?
# a clean exit: streams ended, nothing leaked (under make asan, the sanitizers say)
if [ "$code" -ne 0 ]; then
    echo "# d2nwgd exited with status $code after SIGTERM"
    rc=1
fi
[ "$rc" -eq 0 ] || sed 's/^/# d2nwgd: /' "$tmp/d2nwgd.log" | tail -n 20
rm -rf "$tmp"
exit "$rc"
