#!/bin/sh
# The layer rule, checked from outside the build: for every folder of the
# layer table (`make print-layers`) and every header of the project, a file in
# that folder that includes the header must preprocess when the header's
# folder is one it may use, and must fail to when it is not. Header names are
# unique across folders, so an include can only ever mean one file.
# Prints TAP lines ("ok N - name" / "not ok N - name") for tests/run_tests.sh.
cd "$(dirname "$0")/.." || exit 1
CC=${CC:-cc}
table=$(make -s --no-print-directory print-layers) || { echo "not ok 1 - make print-layers"; exit 1; }
headers=$(find core proto server client -name '*.h' | sort)
n=0
fail=0

report() { # status name
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi
}

dups=$(for h in $headers; do basename "$h"; done | sort | uniq -d)
[ -z "$dups" ]; report $? "header names are unique across folders${dups:+ (duplicated: $dups)}"

while IFS=: read -r folder allowed; do
    incs=""
    for d in $allowed; do incs="$incs -I$d"; done
    wrong=""
    missing=""
    for h in $headers; do
        hdir=$(dirname "$h")
        printf '#include "%s"\n' "$(basename "$h")" >/tmp/d2layers.$$.c
        if $CC -E -D_GNU_SOURCE $incs /tmp/d2layers.$$.c >/dev/null 2>&1; then ok=1; else ok=0; fi
        case " $allowed " in
            *" $hdir "*) [ $ok = 1 ] || missing="$missing $h" ;;
            *) [ $ok = 0 ] || wrong="$wrong $h" ;;
        esac
    done
    rm -f /tmp/d2layers.$$.c
    [ -z "$missing" ]; report $? "$folder: every header of$allowed is usable${missing:+ (fails:$missing)}"
    [ -z "$wrong" ]; report $? "$folder: no header outside$allowed can be included${wrong:+ (reachable:$wrong)}"
done <<EOF
$table
EOF
exit $fail
