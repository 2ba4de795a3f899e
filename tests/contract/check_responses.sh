#!/bin/sh
# check_responses.sh - the responses the API tests recorded (tests/api/apitest.h
# with $D2NWG_CONTRACT_LOG, set by tests/run_tests.sh) checked against
# proto/openapi.yaml by check_responses.py (Debian's python3-jsonschema and
# python3-yaml). Prints TAP.
cd "$(dirname "$0")/../.." || exit 1
log=${D2NWG_CONTRACT_LOG:-${D2NWG_BUILD:-build}/test-logs/api-responses.jsonl}
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3
exec "$py" tests/contract/check_responses.py proto/openapi.yaml "$log"
