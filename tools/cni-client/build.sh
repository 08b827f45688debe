#!/usr/bin/env bash
# Builds cni-client, a runtime-side CNI client on libcni (the library containerd,
# CRI-O and cnitool use), offline from Debian's packages, so tests drive the
# plugin the way a runtime does.
#   tools/cni-client/build.sh [OUT]     default OUT: dist/cni-client
# Needs: apt-get install -y golang-go golang-github-appc-cni-dev
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../../dist/cni-client}
command -v go >/dev/null || { echo "go not found: apt-get install -y golang-go" >&2; exit 1; }
[ -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ] ||
  { echo "libcni not found: apt-get install -y golang-github-appc-cni-dev" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
# Rebuild only when the source changed.
if [ -x "$out" ] && [ "$out" -nt "$here/main.go" ]; then exit 0; fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cp "$here/main.go" "$work/"
cd "$work"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-$HOME/.cache/nhi-cni-go}" GOFLAGS= CGO_ENABLED=0 \
  go build -trimpath -o "$out.tmp" .
mv "$out.tmp" "$out"
