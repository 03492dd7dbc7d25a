#!/usr/bin/env bash
# Installs the Debian packages kernway needs, only those missing. Idempotent and
# quick (one dpkg-query) when everything is already there. Needs root for apt.
set -euo pipefail
pkgs=(clang llvm iputils-ping libbpf-dev libelf-dev bpftool iproute2 iptables sockperf wrk iperf3 nghttp2-client nginx-light libnginx-mod-stream)
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
  # nginx is installed for the benchmarks only; keep its service from starting.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
