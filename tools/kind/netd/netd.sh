#!/bin/sh
# kind-netd: a minimal stand-in for kindnetd, which is not on the Go module
# proxy (used only in the offline node image, tools/kind/node-image.sh). Writes a
# bridge CNI config for this node's podCIDR and routes the other nodes'
# podCIDRs via their InternalIP; no NAT for traffic leaving the cluster.
set -u
conf=/etc/cni/net.d/10-kind-netd-bridge.conflist
while true; do
  cidr=$(kubectl get node "$NODE_NAME" -o jsonpath='{.spec.podCIDR}' 2>/dev/null)
  if [ -n "$cidr" ]; then
    cat > "$conf.new" <<EOC
{"cniVersion":"1.0.0","name":"kind-netd","plugins":[
 {"type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":false,"hairpinMode":true,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$cidr"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
 {"type":"portmap","capabilities":{"portMappings":true}}]}
EOC
    cmp -s "$conf.new" "$conf" && rm -f "$conf.new" || { mv "$conf.new" "$conf"; echo "wrote $conf for $cidr"; }
  fi
  kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' 2>/dev/null |
  while read -r n c ip; do
    [ "$n" = "$NODE_NAME" ] || [ -z "$c" ] || [ -z "$ip" ] || ip route replace "$c" via "$ip"
  done
  sleep 5
done
