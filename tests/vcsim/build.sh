#!/usr/bin/env bash
# Builds tests/vcsim/main.go offline (GOPATH mode over Debian's Go sources; nothing is
# downloaded) into a cache outside the checkout, keyed by the source's hash, and prints the
# binary's path. A second call with the same source only prints it.
#
#   tests/vcsim/build.sh            cache: $VMBACKUP_TOOL_CACHE, else ~/.cache/vmbackup-tools
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${VMBACKUP_TOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmbackup-tools}
hash=$(cat "$here/main.go" /usr/share/gocode/src/github.com/vmware/govmomi/simulator/model.go \
  | sha256sum | cut -c1-16)
out=$cache/vcsim-$hash
mkdir -p "$cache"
exec 9>"$cache/.vcsim-build.lock"
flock 9  # tests started in parallel build it once
if [ ! -x "$out/vcsim" ]; then
  mkdir -p "$out"
  gopath=$(mktemp -d)
  trap 'rm -rf "$gopath"' EXIT
  mkdir -p "$gopath/src/vcsim"
  cp "$here/main.go" "$gopath/src/vcsim/main.go"
  GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$gopath:/usr/share/gocode" \
    GOCACHE="$cache/gocache" go build -o "$out/vcsim.new" vcsim >&2
  mv "$out/vcsim.new" "$out/vcsim"
fi
echo "$out/vcsim"
