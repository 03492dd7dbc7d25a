# kernway build. `make demo` runs the main job, `make test` runs the test suite.
# Both install what is missing (Debian packages, npm ci) and build what is stale:
# BPF objects, the N-API addon and the TypeScript. A second run costs seconds.
SHELL := /bin/bash
NODEDIR := $(shell [ -f /usr/include/node/node_api.h ] && echo --nodedir=/usr)

BPF_SRCS := $(wildcard bpf/*.bpf.c bpf/test/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,build/bpf/%.bpf.o,$(BPF_SRCS))
BPF_HDRS := $(wildcard bpf/include/*.h)
NATIVE_SRCS := $(wildcard native/src/*.cc native/src/*.h)
TS_SRCS := $(shell find k8s model sources agent native waypoint bench lab cli common -name '*.ts' -not -name '*.test.ts' 2>/dev/null)
# asm/types.h lives in the multiarch include folder, which clang -target bpf does not search.
BPF_CFLAGS := -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Wno-unused-function -Ibpf/include -idirafter /usr/include/$(shell uname -m)-linux-gnu

.PHONY: all system build bpf addon ts demo test clean
all: build

system:
	@scripts/install-deps.sh

node_modules/.package-lock.json: package.json package-lock.json | system
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build/bpf/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) | system
	@mkdir -p $(dir $@)
	clang $(BPF_CFLAGS) -c $< -o $@

bpf: $(BPF_OBJS)

build/Release/kernway.node: binding.gyp $(NATIVE_SRCS) node_modules/.package-lock.json | system
	npx --no-install node-gyp configure build $(NODEDIR) --loglevel=warn
	@touch $@

addon: build/Release/kernway.node

dist/.stamp: $(TS_SRCS) tsconfig.json node_modules/.package-lock.json
	npx --no-install tsc -p tsconfig.json
	@touch $@

ts: dist/.stamp

build: system bpf addon ts

demo: build
	node dist/cli/main.js demo

test: build
	node scripts/run-tests.mjs

clean:
	rm -rf build dist
