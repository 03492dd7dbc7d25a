#!/usr/bin/env bash
# Builds the lab's Kubernetes control plane once and caches it outside the clone:
#   $KERNWAY_KUBE_DIR/bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy,
#                          kubectl,etcd,etcdctl}
# (default /var/cache/kernway/kube-1.20.2). Kubernetes v1.20.2 from Debian's own source
# package (built with Debian's Go), etcd from Debian's etcd-server/etcd-client packages.
# Idempotent: when every binary and the stamp are there it does nothing (no apt, no network).
# About 6.5 minutes on 2 cores the first time. Needs root for apt. Two concurrent runs
# (several clones on one machine) serialise on a lock; the second finds the cache built.
set -euo pipefail
version=1.20.2
out=${KERNWAY_KUBE_DIR:-/var/cache/kernway/kube-$version}
want=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl etcd etcdctl)
stamp=$out/bin/.kernway-kube-$version

built() {
  [[ -f $stamp ]] || return 1
  local w
  for w in "${want[@]}"; do [[ -x $out/bin/$w ]] || return 1; done
}
built && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "kernway: building Kubernetes $version needs root (apt-get); run as root, or set KERNWAY_KUBE_DIR to a built cache" >&2
  exit 1
fi
mkdir -p "$out/bin"
exec 9>"$out/.lock"
flock 9
built && exit 0 # another run finished it while we waited

echo "kernway: building Kubernetes $version from Debian's source package into $out (first time only, ~6.5 min on 2 cores)" >&2
export DEBIAN_FRONTEND=noninteractive
src=/etc/apt/sources.list.d/kernway-debian-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$src"
  apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends golang-go make rsync dpkg-dev >/dev/null

work=$(mktemp -d /var/tmp/kernway-kube-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt downloads as _apt
cd "$work"
kube=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
todo=()
for w in "${kube[@]}"; do [[ -x $out/bin/$w ]] || todo+=("$w"); done # resumes an interrupted build

if [[ ! -x $out/bin/etcd || ! -x $out/bin/etcdctl ]]; then
  apt-get download -qq etcd-server etcd-client
  dpkg -x etcd-server_*.deb etcd
  dpkg -x etcd-client_*.deb etcd
  install -m 0755 etcd/usr/bin/etcd etcd/usr/bin/etcdctl "$out/bin/"
fi

if ((${#todo[@]})); then
  apt-get download -qq golang-github-modern-go-reflect2-dev
  dpkg -x golang-github-modern-go-reflect2-dev_*.deb reflect2
  apt-get source -qq --download-only kubernetes
  tar xzf kubernetes_*.orig.tar.gz
  cd kubernetes-*/
  [[ $(basename "$PWD") == kubernetes-$version ]] || { echo "kernway: Debian's kubernetes source is $(basename "$PWD"), not $version" >&2; exit 1; }

  # Patch 1: the vendored reflect2 1.0.1 faults under Go >= 1.18; Debian's 1.0.2 does not.
  r=vendor/github.com/modern-go/reflect2
  rm -rf "$r" && mkdir -p "$r"
  cp ../reflect2/usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$r/"
  cp ../reflect2/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$r/" 2>/dev/null || true

  # Patch 2: built with Go >= 1.16, OpenAPI validation takes "" for null, so custom resources
  # with an empty string field and CRDs with `default: ""` (the Gateway API CRDs) are refused
  # (kubernetes#99804, fixed upstream by kube-openapi#230): keep only the nil check.
  for f in vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go vendor/github.com/go-openapi/validate/type.go; do
    [[ -f $f ]] || continue
    sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
    grep -q 'if data == nil {' "$f" || { echo "kernway: build-kube.sh: patch 2 did not apply to $f" >&2; exit 1; }
  done

  export GOPROXY=off GOFLAGS=-mod=vendor GOCACHE=$work/gocache GOPATH=$work/gopath
  for w in "${todo[@]}"; do
    make WHAT=cmd/$w >/dev/null
    install -m 0755 _output/bin/$w "$out/bin/$w"
  done
fi
"$out/bin/kube-apiserver" --version >"$stamp"
echo "kernway: built $(cat "$stamp") and etcd $("$out/bin/etcd" --version | head -1 | awk '{print $3}') into $out/bin" >&2
