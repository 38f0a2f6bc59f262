# syntax=docker/dockerfile:1
#
# The tensor service's image: a build stage compiles TypeScript with the dev dependencies, and
# the runtime stage holds only the production dependencies and the compiled dist/.
# `test/deploy/container.test.ts` (npm run test:container) replays both stages without an engine.
#
#   docker build -t tensor-service:1.0.0 .
#   docker run --rm -p 3000:3000 tensor-service:1.0.0

# ---- build: npm ci with dev dependencies (tsc), then npm run build:server -> dist/ (the service; not the client)
FROM node:22-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs an install script to compile, and some dev dependencies'
# scripts only report usage over the network
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build:server

# ---- runtime: production dependencies and dist/ only
FROM node:22-slim AS runtime
# tini as PID 1: it forwards SIGTERM to node (which drains: /ready turns 503, in-flight requests
# finish, the worker pool closes) and reaps zombies
RUN apt-get update \
  && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV HOST=0.0.0.0 NODE_ENV=production PORT=3000
# glibc's allocator keeps freed memory up to 32 MiB a block mapped (as npm start sets it, package.json):
# ONNX Runtime's binding copies every engine output into a fresh buffer, and the socket's reads come in
# fresh 64 KiB buffers; with the defaults each of them faulted in new pages (512² safetensors matmuls:
# about 2x the requests per second with these); two malloc arenas rather than one per thread, so memory
# freed by one thread serves another (RSS under 1024² floods 6-14% lower, after a burst 18-38%)
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=67108864:glibc.malloc.arena_max=2
WORKDIR /app
# the files stay owned by root: the service (user node) can read them but not change them
COPY package.json package-lock.json ./
# onnxruntime-node carries the native engine for every platform (288 MB): keep only this image's
# (linux x64: 45 MB, or linux arm64); its install script, which fetches CUDA libraries, never runs
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && npm run prune-platforms \
  && npm cache clean --force
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000
# no curl in the image: node's own fetch asks /health on the port the service listens on
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# node directly, not npm start: npm's prestart would run tsc, a dev dependency that is not here,
# and npm does not pass signals on reliably
CMD ["node", "dist/server.js"]
