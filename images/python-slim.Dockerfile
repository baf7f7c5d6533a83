# Shared shape of the CPU images on a plain Python base: a venv built in a first stage (so
# forwarded pip configuration and wheels never reach the final image), then the harness, run
# unprivileged. Few instructions on purpose: on copy-on-write-less storage drivers (vfs, as in
# CI) every instruction copies the whole file system.
# The venv holds exactly images/<name>/requirements.lock: every package is pinned there with its
# hashes and installed without resolving anything (--no-deps), and pip refuses any other file.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
ARG LOCK_PYTHON=3.11
COPY build/ /opt/build/
RUN python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; sys.exit(v != '${LOCK_PYTHON}' and \
      f'requirements.lock is for Python ${LOCK_PYTHON}; this base has {v}: use another base or relock')" \
 && python3 -m venv /opt/venv \
 && PIP_CONFIG_FILE=/opt/build/pip/pip.conf /opt/venv/bin/pip install --no-cache-dir \
      --disable-pip-version-check --require-hashes --no-deps -r /opt/build/requirements.lock \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
COPY app/ /opt/joulebench/
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/joulebench HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["python3", "-m", "harness"]
# Provenance, read back into every run's record (controller.images.image_provenance).
ARG JOULEBENCH_IMAGE=unknown JOULEBENCH_SOURCE=unknown JOULEBENCH_HARNESS= JOULEBENCH_LOCK= BASE_IMAGE \
    BASE_DIGEST= BASE_PIN="unpinned: built by docker build itself, not by images build"
LABEL joulebench.image="${JOULEBENCH_IMAGE}" joulebench.source="${JOULEBENCH_SOURCE}" \
      joulebench.harness="${JOULEBENCH_HARNESS}" joulebench.lock="${JOULEBENCH_LOCK}" \
      joulebench.base="${BASE_IMAGE}" joulebench.base.digest="${BASE_DIGEST}" joulebench.base.pin="${BASE_PIN}"
