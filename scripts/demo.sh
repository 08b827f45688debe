#!/usr/bin/env bash
# The demo: a test "node" network namespace and three "pod" namespaces, wired
# by nhi-cni through libcni (dist/cni-client) exactly as containerd would.
#   1. wiring: bridge, veth, host-local IPAM and masquerade in one process;
#      addresses, pings pod to pod and pod to gateway, CHECK, DEL.
#   2. policy: the same pods as workload identities of the payments scenario
#      (examples/policies/payments.yaml); which TCP connections pass and which
#      are denied, who held which address, then DEL.
#   3. cluster (scripts/demo-cluster.mjs): two nodes, `nhi-cni agent` on each
#      against a Kubernetes API stand-in; pods across nodes over VXLAN, a
#      NetworkPolicy applied through the API and a label edit, enforced live.
# At the end it shows that nothing is left. Touches nothing outside the
# namespaces and a temp dir.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates network namespaces)" >&2; exit 1; }

tag=$$
node=nhidemo-node-$tag
pods=(nhidemo-a-$tag nhidemo-b-$tag nhidemo-c-$tag)
work=$(mktemp -d /tmp/nhi-demo.XXXXXX)
cleanup() {
  for p in "${pods[@]}"; do ip netns del "$p" 2>/dev/null || true; done
  ip netns del "$node" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
inode() { ip netns exec "$node" "$@"; }

mkdir -p "$work/net.d" "$work/cache" "$work/ipam" "$work/state" "$work/run"
cat > "$work/net.d/10-demo.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "demo",
  "plugins": [
    {
      "type": "nhi-cni",
      "bridge": "nhi-demo0",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": true,
      "stateDir": "$work/state",
      "ipam": {
        "type": "host-local",
        "dataDir": "$work/ipam",
        "ranges": [[{ "subnet": "10.88.0.0/24" }], [{ "subnet": "fd88::/64" }]]
      }
    }
  ]
}
JSON

export NETCONFPATH=$work/net.d CNI_PATH=$root/dist CNI_CACHE_DIR=$work/cache NHI_CNI_RUN_DIR=$work/run
client=$root/dist/cni-client

say "node namespace $node, pods ${pods[*]}"
ip netns add "$node"
for p in "${pods[@]}"; do ip netns add "$p"; done
inode ip link set lo up

say "conflist: one nhi-cni plugin ($root/dist/nhi-cni)"
cat "$work/net.d/10-demo.conflist"

declare -A addr
for p in "${pods[@]}"; do
  say "ADD $p (libcni -> nhi-cni)"
  start=$(date +%s%N)
  result=$(NHI_CNI_TRACE_EXEC=1 inode "$client" add demo "/var/run/netns/$p" 2>"$work/trace")
  end=$(date +%s%N)
  echo "$result"
  echo "(ADD took $(( (end - start) / 1000000 )) ms through libcni; nhi-cni spawned $(grep -c '^nhi-cni exec:' "$work/trace") processes:"
  sed -n 's/^nhi-cni exec: /   /p' "$work/trace"
  echo ")"
  addr[$p]=$(ip -n "$p" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
done

say "reservations, as nhi-cni ipam ls shows them"
"$root/dist/nhi-cni" ipam ls --data-dir "$work/ipam"

say "nftables: one masquerade rule per subnet, not per pod"
inode nft list table inet nhi_cni

say "pod -> pod and pod -> gateway"
for from in "${pods[@]}"; do
  for to in "${pods[@]}"; do
    [ "$from" = "$to" ] && continue
    if ip netns exec "$from" ping -c1 -W2 "${addr[$to]}" >/dev/null; then r=ok; else r=FAILED; fi
    printf '  %-22s -> %-15s %s\n' "$from" "${addr[$to]}" "$r"
  done
  if ip netns exec "$from" ping -c1 -W2 10.88.0.1 >/dev/null; then r=ok; else r=FAILED; fi
  printf '  %-22s -> %-15s %s\n' "$from" "10.88.0.1 (gw)" "$r"
  if ip netns exec "$from" ping -6 -c1 -W2 fd88::1 >/dev/null; then r=ok; else r=FAILED; fi
  printf '  %-22s -> %-15s %s\n' "$from" "fd88::1 (gw)" "$r"
done

say "CHECK each pod"
for p in "${pods[@]}"; do inode "$client" check demo "/var/run/netns/$p" && echo "  $p ok"; done

say "DEL every pod"
for p in "${pods[@]}"; do inode "$client" del demo "/var/run/netns/$p" && echo "  $p deleted"; done

say "policy: the same pods as workloads of the payments scenario"
mkdir -p "$work/policies"
cp "$root/examples/policies/payments.yaml" "$work/policies/"
cat > "$work/net.d/20-secure.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "secure",
  "plugins": [
    {
      "type": "nhi-cni",
      "bridge": "nhi-sec0",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": true,
      "stateDir": "$work/state",
      "capabilities": { "io.nhi-cni/workload": true },
      "policy": { "dir": "$work/policies" },
      "ipam": { "type": "host-local", "dataDir": "$work/ipam", "ranges": [[{ "subnet": "10.89.0.0/24" }]] }
    }
  ]
}
JSON
echo "  nhi-cni policy check $work/policies:"
"$root/dist/nhi-cni" policy check "$work/policies" | sed 's/^/    /'
names=(payment-service payments-db reporting)
declare -A sec
for i in 0 1 2; do
  p=${pods[$i]}
  cap="{\"io.nhi-cni/workload\":{\"namespace\":\"payments\",\"name\":\"${names[$i]}\",\"labels\":{\"app\":\"${names[$i]}\"}}}"
  CAP_ARGS=$cap inode "$client" add secure "/var/run/netns/$p" >/dev/null
  sec[$p]=$(ip -n "$p" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
  echo "  ${names[$i]} (pod $p) is ${sec[$p]}"
done
node_bin=$root/node_modules/.bin/node
ip netns exec "${pods[1]}" "$node_bin" -e "for (const p of [5432, 5433]) require('net').createServer((s) => s.end('hi')).listen(p)" &
server=$!
sleep 0.5
try() { # from-netns host port label
  if ip netns exec "$1" "$node_bin" -e "const s=require('net').connect($3,'$2');s.on('data',()=>process.exit(0));s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),1000)"; then r=allowed; else r=DENIED; fi
  printf '  %-48s %s\n' "$4" "$r"
}
try "${pods[0]}" "${sec[${pods[1]}]}" 5432 "payment-service -> payments-db:5432"
try "${pods[0]}" "${sec[${pods[1]}]}" 5433 "payment-service -> payments-db:5433"
try "${pods[2]}" "${sec[${pods[1]}]}" 5432 "reporting -> payments-db:5432"
try "$node" "${sec[${pods[1]}]}" 5432 "node (kubelet probe) -> payments-db:5432"
# reporting, root in its pod, takes payment-service's address as its own: the
# source check drops its frames before the policy could take it for payment-service.
ip -n "${pods[2]}" addr add "${sec[${pods[0]}]}/32" dev eth0
if ip netns exec "${pods[2]}" "$node_bin" -e "const s=require('net').connect({port:5432,host:'${sec[${pods[1]}]}',localAddress:'${sec[${pods[0]}]}'});s.on('data',()=>process.exit(0));s.on('error',()=>process.exit(1));setTimeout(()=>process.exit(1),1000)"; then r=allowed; else r=DENIED; fi
printf '  %-48s %s\n' "reporting posing as ${sec[${pods[0]}]} -> payments-db" "$r"
ip -n "${pods[2]}" addr del "${sec[${pods[0]}]}/32" dev eth0
kill $server 2>/dev/null || true
echo
echo "  nhi-cni policy explain --from payments/reporting --to payments/payments-db --port 5432/tcp:"
inode "$root/dist/nhi-cni" policy explain --config "$work/net.d/20-secure.conflist" --from payments/reporting --to payments/payments-db --port 5432/tcp | sed 's/^/    /' || true
echo
echo "  nhi-cni policy stats (new connections counted per policy; frames the source check dropped, per pod):"
inode "$root/dist/nhi-cni" policy stats --state-dir "$work/state" | sed 's/^/    /'
echo
echo "  who held ${sec[${pods[1]}]}?"
"$root/dist/nhi-cni" who "${sec[${pods[1]}]}" --state-dir "$work/state" | sed 's/^/    /'
echo
echo "  the ruleset: one map lookup per connection, then the profile's rules (nft list table inet nhi_policy, excerpt)"
inode nft list table inet nhi_policy | grep -E 'chain (forward|pr_)|saddr|daddr|drop|log' | head -24 | sed 's/^/  /'
for p in "${pods[@]}"; do inode "$client" del secure "/var/run/netns/$p"; done
echo "  all pods deleted from network secure"

say "left behind"
echo "  IPAM directories: $(ls "$work/ipam/demo" "$work/ipam/secure" | grep -v ':' | sort -u | tr '\n' ' ')(only locks and round-robin markers)"
echo "  pods in the policy state: $("$root/node_modules/.bin/node" -e "console.log(Object.keys(require('$work/state/policy-state.json').pods).length)")"
echo "  attachment records: $(ls "$work/state/demo/attachments" | wc -l)"
echo "  veths on the node: $(inode ip -o link show type veth | wc -l)"
echo "  pod interfaces: $(for p in "${pods[@]}"; do ip -n "$p" -o link show eth0 2>/dev/null; done | wc -l)"

# Part 3: a small cluster: two nodes, an agent on each, policy from the (stand-in) Kubernetes API.
"$root/node_modules/.bin/node" "$root/scripts/demo-cluster.mjs"
