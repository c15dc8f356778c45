#!/usr/bin/env bash
# Prints the krew manifest of `kubectl msp` for one release: krew/msp.yaml
# with {{VERSION}} and the sha256 of each archive filled in.
#
#   krew/render.sh VERSION DIR > msp.yaml
#
# VERSION is the release tag (v0.1.0; 0.1.0 is read as v0.1.0). DIR holds
# kubectl-msp-<os>-<arch>.tar.gz for linux and darwin, amd64 and arm64.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 VERSION DIR-OF-TARBALLS   (for example: $0 v0.1.0 dist/)" >&2
  exit 2
fi
version=$1
dir=$2
case $version in v*) ;; *) version="v$version" ;; esac
if ! [[ $version =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "$0: $1 is not a release version such as v0.1.0" >&2
  exit 2
fi

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# The manifest without the template's header comment.
manifest=$(sed -n '/^apiVersion:/,$p' "$(dirname "$0")/msp.yaml")
for platform in linux-amd64 linux-arm64 darwin-amd64 darwin-arm64; do
  archive="$dir/kubectl-msp-$platform.tar.gz"
  if [ ! -f "$archive" ]; then
    echo "$0: $archive is missing: build and pack kubectl-msp for $platform first" >&2
    exit 1
  fi
  key="SHA256_$(echo "${platform//-/_}" | tr '[:lower:]' '[:upper:]')"
  manifest=${manifest//"{{$key}}"/$(sha256 "$archive")}
done
manifest=${manifest//"{{VERSION}}"/$version}
if [[ $manifest == *"{{"* ]]; then
  echo "$0: krew/msp.yaml has a placeholder this script does not fill" >&2
  exit 1
fi
printf '%s\n' "$manifest"
