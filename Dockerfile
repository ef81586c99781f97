# The controller image: `canary serve` (or any canary command), run as a non-root user.
#
#   docker build -t canary .
#   docker run -p 8080:8080 -e CANARY_STORE=postgresql://... \
#     -e CANARY_API_TOKENS_READ=... -e CANARY_API_TOKENS_OPERATOR=... canary
#
# tests/server/test_image.py runs the runtime stage's RUN lines in a fresh virtualenv and
# starts `canary serve` from it (there is no Docker engine on the test machines).

# -- build: the wheel, from the checkout ------------------------------------------------
FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canary ./canary
# the shipped policies go into the wheel as canary/policies (package data)
COPY policies ./policies
RUN pip wheel --no-deps --wheel-dir /wheels .

# -- runtime: the wheel installed (with its dependencies) into a slim image --------------
FROM python:3.11.11-slim-bookworm AS runtime
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# pip compiles every module to bytecode as it installs (no --no-compile): no .pyc is
# written at start-up, and the image's files stay read-only. [all]: every optional
# integration (the PostgreSQL store, the Kubernetes routers).
RUN pip install "$(ls /wheels/canary-*.whl)[all]" && rm -rf /wheels
RUN python -m compileall -q "$(python -c 'import canary, os; print(os.path.dirname(canary.__file__))')"
RUN useradd --system --no-create-home --uid 10001 --gid 0 canary \
 && mkdir -p /work && chown 10001:0 /work
# CANARY_POLICY_PATH only adds the user's own policy directories (mount them).
ENV CANARY_LISTEN=0.0.0.0:8080 \
    CANARY_STORE=sqlite:////work/state.db
USER 10001:0
WORKDIR /work
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('CANARY_LISTEN', ':8080').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
ENTRYPOINT ["canary"]
CMD ["serve"]
