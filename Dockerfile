# syntax=docker/dockerfile:1
# paper-consumer: the worker as a container. Build: docker build -t paper-consumer .
# Stage 1 builds a wheel (the SQL migrations ship inside it as `consumer.sql`); stage 2 installs
# only that wheel and its dependencies into a slim image: no compiler, no source tree.

FROM python:3.11-slim AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consumer ./consumer
COPY sql ./sql
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PAPER_LOG_FORMAT=json \
    PAPER_METRICS_PORT=9108
# Bind-mount the wheel from the builder: it never becomes a layer of this image.
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    pip install --no-cache-dir /dist/*.whl \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin paper
USER 10001:10001
WORKDIR /tmp
EXPOSE 9108
# /healthz is 200 while the worker loop turns (see README "Metrics and health"). No curl in a
# slim image; the interpreter is there anyway.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:' + os.environ.get('PAPER_METRICS_PORT', '9108') + '/healthz', timeout=3)"]
ENTRYPOINT ["paper-consumer"]
CMD ["run"]
