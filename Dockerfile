# festivals-exporter image: docs/deployment.md. Two stages: the build stage installs the
# wheel and its (binary-only) dependencies into a virtual environment; the final stage is
# the same slim Python with that environment copied in, no build tools, no package manager
# run. It runs as an unprivileged user and writes nothing, so a read-only root filesystem
# works (mount a tmpfs on /tmp for libraries that want one).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY probes ./probes
# Binary wheels only: nothing is compiled, so the build needs no compiler either.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: /wheels/festivals_exporter-*.whl \
 && /opt/venv/bin/python -m compileall -q /opt/venv

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="festivals-exporter" \
      org.opencontainers.image.description="Prometheus exporter and synthetic prober for the Festivals platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Festivals platform team"
RUN groupadd --system --gid 10001 festivals \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin festivals
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HEALTHCHECK_URL=http://127.0.0.1:9816/-/healthy
WORKDIR /etc/festivals-exporter
USER 10001:10001
EXPOSE 9816
# Loopback only, so the certificate is not checked when the web config enables TLS
# (set HEALTHCHECK_URL=https://127.0.0.1:9816/-/healthy then).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import os, ssl, urllib.request as r; r.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4, context=ssl._create_unverified_context())"]
ENTRYPOINT ["festivals-exporter"]
CMD ["run", "--config.file=/etc/festivals-exporter/festivals-exporter.yml"]
