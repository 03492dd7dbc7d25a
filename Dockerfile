# kernway's image: `docker build -t ghcr.io/kernway/kernway:0.1.0 .` (the image is not built
# or published from this repository's tests; docs/deploy.md). Two stages: the build (clang
# for the BPF objects, node-gyp over libbpf for the addon, tsc), then a slim runtime with
# Node.js 24, libbpf and libelf, and `kernway` on PATH (deploy/daemonset.yaml runs it).

FROM node:24-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev libelf-dev make g++ python3 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json binding.gyp ./
COPY bpf bpf
COPY native native
COPY common common
COPY k8s k8s
COPY model model
COPY sources sources
COPY agent agent
COPY waypoint waypoint
COPY lab lab
COPY bench bench
COPY cli cli
# The production BPF objects (the Makefile's flags; bpf/test/ variants are for tests only).
RUN mkdir -p build/bpf \
 && for src in bpf/*.bpf.c; do \
      clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -Wall -Wno-unused-function -Ibpf/include \
        -idirafter "/usr/include/$(uname -m)-linux-gnu" -c "$src" -o "build/bpf/$(basename "$src" .c).o" || exit 1; \
    done
# The official node image carries Node's headers in /usr/local/include/node.
RUN npx --no-install node-gyp configure build --nodedir=/usr/local --loglevel=warn \
 && npx --no-install tsc -p tsconfig.json \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libelf1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/kernway
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/dist dist
COPY --from=build /src/build/bpf/*.bpf.o build/bpf/
COPY --from=build /src/build/Release/kernway.node build/Release/
RUN printf '#!/bin/sh\nexec node /opt/kernway/dist/cli/main.js "$@"\n' > /usr/local/bin/kernway \
 && chmod 0755 /usr/local/bin/kernway
ENTRYPOINT ["kernway"]
CMD ["--help"]
