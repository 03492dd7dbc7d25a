#!/usr/bin/env bash
# Installs the Debian packages kernway needs, only those missing. Idempotent and
# quick (one dpkg-query) when everything is already there. Needs root for apt.
set -euo pipefail
pkgs=(clang llvm iputils-ping libbpf-dev libelf-dev bpftool iproute2 iptables sockperf wrk iperf3 nghttp2-client nginx-light libnginx-mod-stream prometheus)
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  echo "kernway: installing Debian packages: ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "kernway: installing packages needs root (apt-get); run as root or install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # nginx (benchmarks) and prometheus (test/monitoring starts its own, on loopback) are
  # tools here, not services: keep their services from starting while they install.
  made_policy=
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# kernway install-deps: no service starts during this install\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap '[[ -n $made_policy ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # On a systemd host, a service the packages just installed must not start at the next boot either.
  if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
    for p in "${missing[@]}"; do
      case $p in
        prometheus) systemctl disable --now prometheus >/dev/null 2>&1 || true ;;
        nginx-light) systemctl disable --now nginx >/dev/null 2>&1 || true ;;
      esac
    done
  fi
fi
