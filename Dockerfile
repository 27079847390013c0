# One image, two processes: `python -m auth_service` (the default) and `python -m email_service`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Pinned dependencies first: this layer is rebuilt only when requirements/base.txt changes.
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY common/ common/
COPY auth_service/ auth_service/
COPY email_service/ email_service/
COPY docker/healthcheck.py docker/healthcheck.py

USER app

# Listen on the container's interface; publishing a port is the operator's decision.
ENV AUTH_HOST=0.0.0.0 \
    AUTH_PORT=8000 \
    WORKER_METRICS_HOST=0.0.0.0 \
    WORKER_METRICS_PORT=9100

EXPOSE 8000 9100

# Probes auth's /readyz; the worker's container passes its own URL (compose.yaml does).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "docker/healthcheck.py"]

STOPSIGNAL SIGTERM
CMD ["python", "-m", "auth_service"]
