#!/usr/bin/env bash
# Builds a kind node image without a container registry, for machines where
# kindest/node cannot be pulled. Everything comes from the Go module proxy and
# Debian's packages; the procedure follows kind's own node-image contract
# (images/base and pkg/build/nodeimage in the pinned kind module):
#
#   binaries  kubelet, kubeadm, kube-scheduler, kube-proxy (tools/controlplane's
#             module, same Kubernetes as the local control plane, which also
#             provides kube-apiserver, kube-controller-manager, kubectl, etcd),
#             crictl, the CNI plugins, CoreDNS, and pause (gcc -static)
#   rootfs    Debian bookworm by debootstrap + kind's base-image files + the
#             Kubernetes binaries
#   images    what kubeadm and kind start, built locally into Docker
#   node      the images pre-imported into the node's containerd, committed
#
# What differs from kindest/node: kindnetd is not on the module proxy, so a
# small DaemonSet (tools/kind/netd) writes each node's bridge CNI config and
# routes; there is no local-path-provisioner (kind falls back to a host-path
# StorageClass; nothing here uses volumes). Two host quirks are applied:
# containerd's restrict_oom_score_adj (a host without CAP_SYS_RESOURCE cannot
# lower OOM scores) and kubelet's --fail-cgroupv1=false (cgroup v1 hosts).
#
# The result is cached as a Docker image whose tag carries a hash of every
# input (this script, tools/kind/netd, the pinned versions), so it is rebuilt
# only when one of them changes. Prints the image name.
#
# Usage: tools/kind/node-image.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_root=${MSP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/msp-operator}
log() { echo "node-image.sh: $*" >&2; }
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

# Pins. Kubernetes and etcd come from tools/controlplane/go.mod.
crictl_version=v1.37.0
cni_plugins_version=v1.10.0
coredns_version=v1.14.2
coredns_image_tag=v1.14.2        # what kubeadm v1.36 deploys
etcd_image_tag=3.6.8-0           # what kubeadm v1.36 deploys
pause_image_tag=3.10.2           # what kubeadm v1.36 deploys (kind's containerd asks for 3.10)
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3; exit}' "$repo/tools/controlplane/go.mod")
kind_version=$(awk '$1 == "sigs.k8s.io/kind" {print $2; exit}' "$here/cli/go.mod")
[ -n "$k8s_version" ] && [ -n "$kind_version" ] || { log "cannot read the pinned versions"; exit 1; }

key=$(cat "$0" "$here"/netd/* "$repo/tools/controlplane/go.mod" "$repo/tools/controlplane/go.sum" "$here/cli/go.mod" | sha256sum | cut -c1-12)
image=msp-operator.io/kind-node:$k8s_version-$key
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

work=$cache_root/kind/node-work
rm -rf "$work"
mkdir -p "$work"/{bin,cni,rootfs,proxyroot,img}
trap 'rm -rf "$work"' EXIT
kind_src=$(cd "$here/cli" && go list -m -f '{{.Dir}}' sigs.k8s.io/kind)
k8s_src=$(cd "$repo/tools/controlplane" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
mirror=${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
mirror=${mirror:-http://deb.debian.org/debian}
log "building $image (Kubernetes $k8s_version, kind $kind_version) in $work"
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

binaries() {
  local cp_bins
  cp_bins=$(bash "$repo/tools/controlplane/build.sh")
  cp "$cp_bins"/{kube-apiserver,kube-controller-manager,kubectl,etcd} "$work/bin/"
  local minor=${k8s_version#v1.} ldflags="-s -w" build_date
  minor=${minor%%.*}
  build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  (cd "$repo/tools/controlplane" && go build -trimpath -ldflags "$ldflags" -o "$work/bin/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy)
  # These three are separate modules with their own dependency graphs; `go
  # install mod@version` builds each against its own go.mod and checks it
  # against the checksum database.
  GOFLAGS=-buildvcs=false GOBIN="$work/bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version"
  GOFLAGS=-buildvcs=false GOBIN="$work/cni" go install -trimpath -ldflags "-s -w" \
    "github.com/containernetworking/plugins/plugins/ipam/host-local@$cni_plugins_version" \
    "github.com/containernetworking/plugins/plugins/main/loopback@$cni_plugins_version" \
    "github.com/containernetworking/plugins/plugins/main/ptp@$cni_plugins_version" \
    "github.com/containernetworking/plugins/plugins/main/bridge@$cni_plugins_version" \
    "github.com/containernetworking/plugins/plugins/meta/portmap@$cni_plugins_version"
  GOFLAGS=-buildvcs=false GOBIN="$work/bin" go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$coredns_version"
  mkdir -p "$work/img/pause"
  gcc -Os -static -DVERSION="$pause_image_tag-msp-operator" -o "$work/img/pause/pause" "$k8s_src/build/pause/linux/pause.c"
  strip "$work/img/pause/pause"
}

rootfs() {
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  local r=$work/rootfs f=$kind_src/images/base/files
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,iptables,iproute2,mount,ca-certificates,procps,containerd,runc,conntrack,ethtool,socat,util-linux,kmod,libseccomp2,pigz,nftables,ebtables,jq,curl,e2fsprogs,fuse-overlayfs,bash \
    bookworm "$r" "$mirror" >"$work/debootstrap-node.log" 2>&1 || { tail -n 20 "$work/debootstrap-node.log" >&2; return 1; }
  # kind's images/base/Dockerfile, replayed on the directory.
  install -m 0755 "$f"/usr/local/bin/* "$r/usr/local/bin/"
  mkdir -p "$r/kind" "$r/LICENSES" "$r/etc/containerd" "$r/etc/default" "$r/etc/sysctl.d" "$r/etc/systemd/system/kubelet.service.d"
  cp -r "$f/kind/." "$r/kind/" && chmod -R u+w,a+rX "$r/kind" && chmod 0755 "$r"/kind/bin/*
  install -m 0644 "$f"/LICENSES/* "$r/LICENSES/"
  install -m 0644 "$f/etc/crictl.yaml" "$r/etc/"
  install -m 0644 "$f"/etc/containerd/* "$r/etc/containerd/"
  install -m 0644 "$f"/etc/default/* "$r/etc/default/"
  install -m 0644 "$f"/etc/sysctl.d/* "$r/etc/sysctl.d/"
  install -m 0644 "$f"/etc/systemd/system/*.service "$f"/etc/systemd/system/*.slice "$r/etc/systemd/system/"
  install -m 0644 "$f"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
  (
    cd "$r"
    find lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
    rm -f lib/systemd/system/multi-user.target.wants/* etc/systemd/system/*.wants/* \
      lib/systemd/system/local-fs.target.wants/* lib/systemd/system/sockets.target.wants/*udev* \
      lib/systemd/system/sockets.target.wants/*initctl* lib/systemd/system/basic.target.wants/*
    echo ReadKMsg=no >>etc/systemd/journald.conf
    # Debian's containerd and runc live where kind's units do not look.
    ln -sf /usr/bin/containerd usr/local/bin/containerd
    ln -sf /usr/bin/ctr usr/local/bin/ctr
    ln -sf /usr/bin/containerd-shim-runc-v2 usr/local/bin/containerd-shim-runc-v2
    ln -sf /usr/sbin/runc usr/local/sbin/runc
    mkdir -p etc/kubernetes/manifests opt/cni/bin etc/cni/net.d kind/manifests
  )
  chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  chroot "$r" systemctl mask systemd-binfmt.service >/dev/null 2>&1
  chroot "$r" sh -c "ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}' | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json"
  # Host quirks (harmless elsewhere): no CAP_SYS_RESOURCE means no negative
  # OOM scores; kubelet >= 1.35 refuses cgroup v1 unless told otherwise.
  sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$r/etc/containerd/config.toml"
  echo 'KUBELET_EXTRA_ARGS=--runtime-cgroups=/system.slice/containerd.service --fail-cgroupv1=false' >"$r/etc/default/kubelet"
  # What `kind build node-image` adds.
  install -m 0755 "$work"/bin/{kubelet,kubeadm,kubectl} "$r/usr/bin/"
  install -m 0755 "$work/bin/crictl" "$r/usr/local/bin/"
  install -m 0755 "$work"/cni/* "$r/opt/cni/bin/"
  echo -n "$k8s_version" >"$r/kind/version"
  install -m 0644 "$here/netd/default-cni.yaml" "$r/kind/manifests/default-cni.yaml"
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
  : >"$r/etc/resolv.conf"
  # kube-proxy needs the iptables/nftables user space.
  debootstrap --variant=minbase --include=iptables,nftables,conntrack,kmod,ipset bookworm "$work/proxyroot" "$mirror" \
    >"$work/debootstrap-proxy.log" 2>&1 || { tail -n 20 "$work/debootstrap-proxy.log" >&2; return 1; }
  rm -rf "$work"/proxyroot/var/cache/apt/archives/*.deb "$work"/proxyroot/var/lib/apt/lists/* "$work"/proxyroot/usr/share/{doc,man,locale}
  install -m 0755 "$work/bin/kube-proxy" "$work/proxyroot/usr/local/bin/kube-proxy"
}

images() {
  local path='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' base=$work/img/staticbase
  # A distroless-static-like base: users, CA bundle, /tmp.
  mkdir -p "$base/etc/ssl/certs" "$base/tmp"
  chmod 1777 "$base/tmp"
  cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$base/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$base/etc/group"
  echo 'hosts: files dns' >"$base/etc/nsswitch.conf"
  tar -C "$base" -c . | docker import - msp-operator.io/kind-staticbase:local >/dev/null
  one() { # image binary
    local dir=$work/img/${2##*/} name=${2##*/}
    mkdir -p "$dir" && cp "$2" "$dir/"
    printf 'FROM msp-operator.io/kind-staticbase:local\nENV %s\nCOPY %s /usr/local/bin/%s\nENTRYPOINT ["/usr/local/bin/%s"]\n' \
      "$path" "$name" "$name" "$name" >"$dir/Dockerfile"
    docker build -q -t "$1" "$dir" >/dev/null
  }
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    one "registry.k8s.io/$c:$k8s_version" "$work/bin/$c"
  done
  one "registry.k8s.io/etcd:$etcd_image_tag" "$work/bin/etcd"
  one "registry.k8s.io/coredns/coredns:$coredns_image_tag" "$work/bin/coredns"
  printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$work/img/pause/Dockerfile"
  docker build -q -t "registry.k8s.io/pause:$pause_image_tag" "$work/img/pause" >/dev/null
  docker tag "registry.k8s.io/pause:$pause_image_tag" registry.k8s.io/pause:3.10
  command -v busybox >/dev/null 2>&1 || apt_install busybox-static
  mkdir -p "$work/img/busybox" && cp "$(command -v busybox)" "$work/img/busybox/busybox"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$work/img/busybox/Dockerfile"
  docker build -q -t msp-operator.io/kind-busybox:local "$work/img/busybox" >/dev/null
  mkdir -p "$work/img/netd" && cp "$here"/netd/{netd.sh,Dockerfile} "$work/bin/kubectl" "$work/img/netd/"
  docker build -q -t msp-operator.io/kind-netd:v1 "$work/img/netd" >/dev/null
  tar -C "$work/proxyroot" -c . | docker import --change "ENV $path" \
    --change 'ENTRYPOINT ["/usr/local/bin/kube-proxy"]' - "registry.k8s.io/kube-proxy:$k8s_version" >/dev/null
}

node() {
  local preload="registry.k8s.io/pause:3.10 registry.k8s.io/pause:$pause_image_tag registry.k8s.io/etcd:$etcd_image_tag
    registry.k8s.io/kube-apiserver:$k8s_version registry.k8s.io/kube-controller-manager:$k8s_version
    registry.k8s.io/kube-scheduler:$k8s_version registry.k8s.io/kube-proxy:$k8s_version
    registry.k8s.io/coredns/coredns:$coredns_image_tag msp-operator.io/kind-netd:v1"
  tar -C "$work/rootfs" -c . | docker import --change 'ENV container=docker' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' - "$image-base" >/dev/null
  # As kind's pkg/build/nodeimage does: run containerd in the node, import the
  # images into it (pinned, so the kubelet never garbage-collects them), commit.
  local id=msp-operator-node-build-$$
  docker run -d --name "$id" --entrypoint=sleep --security-opt seccomp=unconfined "$image-base" infinity >/dev/null
  # shellcheck disable=SC2064
  trap "docker rm -f -v $id >/dev/null 2>&1 || true; rm -rf '$work'" EXIT
  docker exec "$id" bash -c 'nohup containerd >/dev/null 2>&1 &'
  for _ in $(seq 30); do docker exec "$id" test -S /run/containerd/containerd.sock && break; sleep 1; done
  # shellcheck disable=SC2086
  docker save $preload | docker exec -i "$id" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
  docker exec "$id" pkill containerd
  sleep 2
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' "$id" "$image-nostop" >/dev/null
  docker rm -f -v "$id" >/dev/null
  # Docker 20.10's import/commit --change refuse STOPSIGNAL; one build line adds it.
  printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$image-nostop" | docker build -q -t "$image" - >/dev/null
  docker rmi "$image-nostop" "$image-base" >/dev/null
}

for stage in binaries rootfs images node; do
  started=$(date +%s)
  "$stage"
  log "$stage done in $(($(date +%s) - started)) s"
done
echo "$image"
