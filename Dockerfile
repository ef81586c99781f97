# The controller image: canary (with its policies and every extra: PostgreSQL store,
# Kubernetes routers), run as a non-root user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/canary
COPY pyproject.toml README.md ./
COPY canary ./canary
COPY policies ./policies
RUN pip install --no-compile '.[all]' \
 && useradd --system --create-home --home-dir /home/canary --uid 10001 canary \
 && mkdir -p /work && chown canary /work
USER canary
WORKDIR /work
ENTRYPOINT ["canary"]
CMD ["--help"]
