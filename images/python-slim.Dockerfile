# Shared shape of every joulebench image: a venv built in a first stage (so forwarded pip
# configuration and wheels never reach the final image), then the harness, run unprivileged.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
COPY pip/ /opt/pip/
COPY requirements.txt /opt/requirements.txt
RUN python3 -m venv /opt/venv \
 && PIP_CONFIG_FILE=/opt/pip/pip.conf /opt/venv/bin/pip install --no-cache-dir \
      --disable-pip-version-check -r /opt/requirements.txt \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
COPY --from=build /opt/venv /opt/venv
COPY harness/ /opt/joulebench/harness/
COPY suite/ /opt/joulebench/suite/
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/opt/joulebench HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["python3", "-m", "harness"]
