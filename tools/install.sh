#!/bin/sh
# tools/install.sh - the npm-only build tools (the OpenAPI linter, @redocly/cli;
# the Kubernetes manifest schema checker, kubernetes-models;
# the browser test's driver, puppeteer-core, which downloads no browser: the
# test drives Debian's chromium) into tools/node_modules, pinned by
# tools/package-lock.json; `make deps` runs it.
# Node.js and npm come from Debian (nodejs, npm) when the machine has none.
# @redocly/cli 2.x needs Node.js >= 20.19; with an older Node.js (Debian 12
# ships 18.x) the 1.x line pinned in tools/node18/ is installed instead.
# Prints the folder whose node_modules/.bin/redocly the tests use.
set -e
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    echo "tools: installing nodejs npm" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        nodejs npm </dev/null >&2
fi
dir=.
node -e 'const [a, b] = process.versions.node.split(".").map(Number);
         process.exit(a > 20 && !(a === 21 || (a === 22 && b < 12)) || (a === 20 && b >= 19) ? 0 : 1)' \
    || dir=node18
# the installed versions of each pinned package, against package.json's
versions() {
    for pkg in @redocly/cli puppeteer-core kubernetes-models; do
        if [ "$1" = want ]; then
            sed -n "s|.*\"$pkg\": \"\([^\"]*\)\".*|\1|p" "$dir/package.json"
        else
            (cd "$dir" && node -p "require('./node_modules/$pkg/package.json').version" 2>/dev/null) || echo none
        fi
    done | tr '\n' ' '
}
want=$(versions want)
have=$(versions have)
if [ "$have" != "$want" ]; then
    echo "tools: npm ci in tools/$dir (@redocly/cli, puppeteer-core, kubernetes-models: $want)" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
fi
if [ "$dir" = . ]; then echo tools; else echo "tools/$dir"; fi
