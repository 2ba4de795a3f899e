#!/bin/sh
# deploy/ checked with the ecosystem's own tools, as TAP lines for
# tests/run_tests.sh:
#   - the systemd unit passes `systemd-analyze verify` (ExecStart pointed at
#     the built daemon) and `systemd-analyze security` rates it below 2.0;
#   - its install steps give the config to the group d2nwg, mode 0640;
#   - MemoryDenyWriteExecute=yes holds: neither d2nwgd nor a library it loads
#     asks for an executable stack (GNU_STACK RWE);
#   - the Kubernetes manifests (deploy/k8s, one pod per store; deploy/k8s-fleet,
#     replicas on PostgreSQL) parse and pass the API's schemas, with the checks
#     tests/pkg/k8s_check.py lists;
#   - deploy/compose.yaml (replicas on PostgreSQL on one host) passes
#     `docker-compose config`;
#   - the Containerfile takes CUDA as a build argument, passes it to make, and
#     pins its Debian bases by date (no floating tag).
# A check whose tool is missing prints "ok N - NAME # SKIP no TOOL".
cd "$(dirname "$0")/../.." || exit 1
B=${D2NWG_BUILD:-build}
n=0
fail=0
report() { # status name
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

unit=deploy/d2nwgd.service
if command -v systemd-analyze >/dev/null 2>&1 && [ -x "$B/d2nwgd" ]; then
    d=$(cd "$B" && pwd)
    sed "s|/usr/local/bin/d2nwgd|$d/d2nwgd|" "$unit" >"$tmp/d2nwgd.service"
    out=$(systemd-analyze verify "$tmp/d2nwgd.service" 2>&1)
    [ -z "$out" ]; report $? "systemd-analyze verify $unit${out:+: $out}"
    score=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null |
        sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    echo "# systemd-analyze security: $score"
    awk -v s="$score" 'BEGIN { exit !(s != "" && s + 0 < 2.0) }'
    report $? "systemd-analyze security rates $unit below 2.0 (got ${score:-nothing})"
else
    skip "systemd-analyze verify $unit" "no systemd-analyze or no $B/d2nwgd"
    skip "systemd-analyze security below 2.0" "no systemd-analyze or no $B/d2nwgd"
fi
grep -Eq '^#   install .*-g d2nwg .*-m 640 deploy/d2nwgd.conf.example /etc/d2nwg/d2nwgd.conf' "$unit"
report $? "$unit install steps: config group d2nwg, mode 0640"
for dir in ConfigurationDirectory StateDirectory; do
    grep -q "^$dir=" "$unit"; report $? "$unit sets $dir"
done

if command -v readelf >/dev/null 2>&1 && [ -x "$B/d2nwgd" ]; then
    wx=""
    for f in "$B/d2nwgd" $(ldd "$B/d2nwgd" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p'); do
        readelf -lW "$f" 2>/dev/null | grep GNU_STACK | grep -q RWE && wx="$wx $f"
    done
    [ -z "$wx" ]; report $? "no executable stack in d2nwgd or its libraries (MemoryDenyWriteExecute)${wx:+:$wx}"
else
    skip "no executable stack in d2nwgd or its libraries" "no readelf or no $B/d2nwgd"
fi

if $PY -c 'import yaml' 2>/dev/null; then
    TAP_N=$n $PY tests/pkg/k8s_check.py deploy/k8s deploy/k8s-fleet || fail=1
else
    skip "deploy/k8s manifests parse" "no python3-yaml"
fi 2>&1 | tee "$tmp/k8s.out" | grep -v '^#TAP_N'
k=$(sed -n 's/^#TAP_N //p' "$tmp/k8s.out")
grep -q '^not ok' "$tmp/k8s.out" && fail=1
n=${k:-$((n + 1))}

if command -v docker-compose >/dev/null 2>&1; then
    # the password file is the operator's to create; an empty one stands in
    cp deploy/compose.yaml deploy/compose-d2nwgd.conf "$tmp/" && : >"$tmp/db-password"
    out=$(cd "$tmp" && docker-compose -f compose.yaml config -q 2>&1)
    report $? "docker-compose config deploy/compose.yaml${out:+: $out}"
else
    skip "docker-compose config deploy/compose.yaml" "no docker-compose"
fi

cf=deploy/Containerfile
grep -q '^ARG CUDA' "$cf"; report $? "$cf declares ARG CUDA"
grep -q 'make BUILD=/out CUDA="\$CUDA"' "$cf"; report $? "$cf passes CUDA to make"
froms=$(grep -E '^(ARG (BUILD|RUN)_BASE=|FROM )' "$cf")
echo "$froms" | grep -E '^ARG (BUILD|RUN)_BASE=' | grep -vqE ':bookworm-[0-9]{8}-slim(@sha256:[0-9a-f]{64})?$'
[ $? != 0 ]; report $? "$cf pins its Debian bases by a dated tag (or digest)"
grep -q '^ARG DEBIAN_SNAPSHOT=[0-9]\{8\}T[0-9]\{6\}Z' "$cf"; report $? "$cf pins apt to a Debian snapshot date"
[ -f deploy/apt-snapshot.sh ] && sh -n deploy/apt-snapshot.sh; report $? "deploy/apt-snapshot.sh is valid sh"
exit $fail
