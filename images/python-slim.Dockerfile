# Shared shape of the CPU images on a plain Python base: a venv built in a first stage (so
# forwarded pip configuration and wheels never reach the final image), then the harness, run
# unprivileged. Few instructions on purpose: on copy-on-write-less storage drivers (vfs, as in
# CI) every instruction copies the whole file system.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
COPY build/ /opt/build/
RUN python3 -m venv /opt/venv \
 && PIP_CONFIG_FILE=/opt/build/pip/pip.conf /opt/venv/bin/pip install --no-cache-dir \
      --disable-pip-version-check -r /opt/build/requirements.txt \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
COPY app/ /opt/joulebench/
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/joulebench HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
ENTRYPOINT ["python3", "-m", "harness"]
ARG JOULEBENCH_IMAGE=unknown JOULEBENCH_SOURCE=unknown BASE_IMAGE
LABEL joulebench.image=${JOULEBENCH_IMAGE} joulebench.source=${JOULEBENCH_SOURCE} \
      joulebench.base=${BASE_IMAGE}
