#!/bin/sh
# Kept for the API tests: the shared fixture lives in tests/fixture.sh.
exec sh "$(dirname "$0")/../fixture.sh" "$@"
