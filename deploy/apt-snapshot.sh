#!/bin/sh
# apt-snapshot DATE - used by deploy/Containerfile: on a Debian base, point apt
# at the Debian snapshot archive of DATE (e.g. 20241223T000000Z) so that every
# build installs the same package versions, then `apt-get update`. Other bases
# (the Ubuntu-based CUDA images) and an empty DATE keep their own sources.
set -e
date=$1
. /etc/os-release
if [ "$ID" = debian ] && [ -n "$date" ]; then
    rm -f /etc/apt/sources.list
    cat > /etc/apt/sources.list.d/debian.sources <<SRC
Types: deb
URIs: http://snapshot.debian.org/archive/debian/$date
Suites: $VERSION_CODENAME $VERSION_CODENAME-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://snapshot.debian.org/archive/debian-security/$date
Suites: $VERSION_CODENAME-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    # a snapshot's Release files are past their Valid-Until date by design
    apt-get -o Acquire::Check-Valid-Until=false update -qq
else
    apt-get update -qq
fi
