# sync-job: a batch job image. Build: docker build -t sync-job .   Try offline: docker run --rm sync-job
# Stage 1 builds the package and its dependencies into a venv; stage 2 copies only that venv, so no
# compiler, pip cache or source tree ends up in the image.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# pyproject names README.md (readme) and LICENSE (license-files): the build needs both.
COPY pyproject.toml README.md LICENSE ./
COPY sync_job/ sync_job/
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="sync-job" \
      org.opencontainers.image.description="Keep a Pipedrive CRM in sync with jaffle-shop order data"
# A fixed numeric uid, so Kubernetes can check runAsNonRoot and the workdir volume's ownership matches.
RUN groupadd --system --gid 10001 sync \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sync-job --no-create-home \
       --shell /usr/sbin/nologin sync \
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
