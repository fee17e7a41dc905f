# sync-job: a batch job image. Build: docker build -t sync-job .   Try offline: docker run --rm sync-job
# Stage 1 builds the package and its dependencies into a venv; stage 2 copies only that venv, so no
# compiler, pip cache or source tree ends up in the image.
# Air-gapped build (no index): a folder of wheels for requirements.lock (`make wheelhouse`), passed as the `wheels`
# build context:  docker build --build-arg PIP_SOURCE=wheels --build-context wheels=wheelhouse -t sync-job .

# The base of both stages; CI builds against a local stand-in of it (.ci/image).
ARG PYTHON_IMAGE=python:3.11-slim

# The `wheels` context: empty unless --build-context replaces it.
FROM scratch AS wheels

FROM ${PYTHON_IMAGE} AS builder
# index (default): install from the package index; wheels: only from the `wheels` context, never the network.
ARG PIP_SOURCE=index
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY --from=wheels / /wheels/
# The lock pins every runtime dependency and the build backend by hash: two builds of one commit install the same.
COPY requirements.lock ./
RUN case "$PIP_SOURCE" in \
      index) ;; \
      wheels) export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels ;; \
      *) echo "PIP_SOURCE must be index or wheels, not '$PIP_SOURCE'" >&2; exit 2 ;; \
    esac \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
# pyproject names README.md (readme) and LICENSE (license-files): the build needs both.
COPY pyproject.toml README.md LICENSE ./
COPY sync_job/ sync_job/
# --no-deps: the dependencies are the locked ones above; --no-build-isolation: the locked setuptools builds it.
# Then the build-only tools leave the venv: a run needs neither pip nor setuptools.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --no-index . \
    && /opt/venv/bin/pip uninstall --yes --quiet setuptools pip

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sync-job" \
      org.opencontainers.image.description="Keep a Pipedrive CRM in sync with jaffle-shop order data"
# A fixed numeric uid, so Kubernetes can check runAsNonRoot and the workdir volume's ownership matches.
# Named sync-job: Debian images already have a system user `sync` (uid 4).
RUN groupadd --system --gid 10001 sync-job \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sync-job --no-create-home \
       --shell /usr/sbin/nologin sync-job \
    && mkdir -p /var/lib/sync-job \
    && chown 10001:10001 /var/lib/sync-job
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# conf/demo.yaml and the data/ sample make `sync-job demo` work offline; the real config is mounted.
COPY conf/ conf/
COPY data/ data/
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/sync-job
USER 10001:10001
# The workdir (ETag caches, combined.csv, results, reports, the lock) lives on a volume that outlives a run.
VOLUME ["/var/lib/sync-job"]
ENTRYPOINT ["sync-job"]
CMD ["demo", "--workdir", "/var/lib/sync-job/demo"]
