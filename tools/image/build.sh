#!/usr/bin/env bash
# Builds the operator image from a release binary built on this host:
# `make image-local`, and what `make e2e-kind` loads into kind.
#
# The runtime base is distroless cc-debian12 (glibc, CA certificates, user
# nonroot) when Docker has it or can pull it. Where no registry is reachable,
# an equivalent base is made from this host's own files: the glibc the binary
# links (ldd), the CA bundle, and /etc/passwd with nonroot (65532). That is
# only sound when this host is Debian 12, the runtime the binary is built for;
# elsewhere the script stops and says so.
#
# Usage: tools/image/build.sh IMAGE[:TAG]    (prints the image name)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${1:?usage: tools/image/build.sh IMAGE[:TAG]}
runtime=${RUNTIME_IMAGE:-gcr.io/distroless/cc-debian12:nonroot}
log() { echo "image/build.sh: $*" >&2; }

(cd "$repo" && CARGO_PROFILE_RELEASE_STRIP=symbols cargo build -q --release --locked --bin msp-operator)
binary=$repo/target/release/msp-operator

if ! docker image inspect "$runtime" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$runtime" >/dev/null 2>&1; then
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  if [ "$codename" != bookworm ]; then
    log "cannot pull $runtime, and this host is not Debian 12 (bookworm), so a base made from its glibc would not match; set RUNTIME_IMAGE to a reachable glibc image"
    exit 1
  fi
  runtime=msp-operator.io/cc-debian12-local:nonroot
  if ! docker image inspect "$runtime" >/dev/null 2>&1; then
    log "cannot pull the distroless base; making $runtime from this Debian 12 host's glibc"
    base=$(mktemp -d)
    trap 'rm -rf "$base"' EXIT
    mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot"
    chmod 1777 "$base/tmp"
    ldd "$binary" | awk '$2 == "=>" {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
      mkdir -p "$base$(dirname "$lib")"
      cp -L "$lib" "$base$lib"
    done
    cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$base/etc/group"
    chown 65532:65532 "$base/home/nonroot"
    tar -C "$base" -c . | docker import - "$runtime" >/dev/null
  fi
fi

context=$(mktemp -d)
cp "$binary" "$context/msp-operator"
DOCKER_BUILDKIT=0 docker build -q -f "$here/Dockerfile.prebuilt" --build-arg "RUNTIME_IMAGE=$runtime" -t "$image" "$context" >/dev/null 2>"$context/build.log" \
  || { cat "$context/build.log" >&2; rm -rf "$context"; exit 1; }
rm -rf "$context"
log "built $image on $runtime"
echo "$image"
