# flexo, a caching proxy for pacman, in a container.
#
#   docker build -t flexo .
#   docker run -d --name flexo --stop-timeout 20 -p 7878:7878 -v flexo-cache:/var/cache/flexo flexo
#
# Settings come from FLEXO_* variables (docker run -e FLEXO_MIRRORS_AUTO_ALLOWED_COUNTRIES=DE,AT ...) or from a
# configuration file mounted at /etc/flexo/flexo.toml. Status page: http://HOST:7878/, metrics: /metrics.
FROM denoland/deno:2.9.6

WORKDIR /opt/flexo
COPY deno.json deno.lock main.ts ./
COPY src/ ./src/
COPY conf/flexo.toml /usr/share/doc/flexo/flexo.toml.example

# The cache (packages in pkg/, mirror rankings in state/) lives in a volume owned by the unprivileged user
# "deno" (uid 1993) that the base image provides; it also writes the bundle below into /opt/flexo.
RUN mkdir -p /var/cache/flexo/pkg /var/cache/flexo/state /etc/flexo \
  && chown -R deno:deno /var/cache/flexo \
  && chown deno:deno /opt/flexo
USER deno
# Fetch the npm dependencies at build time, exactly as locked; the container needs no registry at run time.
# Then bundle flexo and its packages into one minified module, as the executable is (scripts/compile.ts,
# BUNDLE): several MiB less resident memory than the modules one by one (BENCHMARKS.md, session eleven).
RUN deno install --frozen --entrypoint main.ts \
  && deno bundle --frozen --quiet --minify --platform deno --output /opt/flexo/flexo.js main.ts

ENV FLEXO_LISTEN_IP_ADDRESS=0.0.0.0 \
    FLEXO_PORT=7878 \
    FLEXO_CACHE_DIRECTORY=/var/cache/flexo/pkg \
    FLEXO_MIRRORLIST_FALLBACK_FILE=/var/cache/flexo/state/mirrorlist \
    FLEXO_MIRRORLIST_LATENCY_TEST_RESULTS_FILE=/var/cache/flexo/state/latency_test_results.json
VOLUME ["/var/cache/flexo"]
EXPOSE 7878

# After SIGTERM flexo answers /healthz with 503 for shutdown_drain_secs (3), then finishes running transfers
# for up to 10 s: the whole stop takes at most 18 s (with the longest drain, 8 s). "docker stop" waits only
# 10 s before SIGKILL unless told otherwise (--stop-timeout 20 above). Partial downloads stay resumable either way.
STOPSIGNAL SIGTERM
# The health check asks /healthz (503 while draining) with the image's own deno: the image has no curl or wget.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s \
  CMD ["deno", "eval", "const r = await fetch(`http://127.0.0.1:${Deno.env.get('FLEXO_PORT')}/healthz`, { signal: AbortSignal.timeout(4000) }).catch(() => undefined); await r?.body?.cancel(); Deno.exit(r?.status === 200 ? 0 : 1)"]

# The same permissions and V8 memory settings as the compiled executable (scripts/compile.ts), nothing broader;
# loading libc (the Deno image is Debian) is for sendfile, see src/server/sendfile.ts.
ENTRYPOINT ["deno", "run", "--frozen", "--cached-only", "--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-sys=hostname", "--allow-ffi=/usr/lib/libc.so.6,/lib/x86_64-linux-gnu/libc.so.6,/lib/aarch64-linux-gnu/libc.so.6,/lib64/libc.so.6", "--v8-flags=--max-semi-space-size=1,--heap-growing-percent=20,--expose-gc", "/opt/flexo/flexo.js"]
CMD []
