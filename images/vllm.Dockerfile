# vLLM's own image as the base (pinned by digest in images/vllm-cuda/manifest.toml), the harness
# beside it, run unprivileged; the GPU is handed in at run time (docker --gpus), never at build.
# Its requirements.lock is empty on purpose (vLLM's Python stays as vLLM built it): pip runs only
# when the lock names a package, with its hashes checked as in every image.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG LOCK_PYTHON
COPY build/ /opt/build/
RUN python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; sys.exit(v != '${LOCK_PYTHON}' and \
      f'requirements.lock is for Python ${LOCK_PYTHON}; this base has {v}: set python in the manifest and relock')" \
 && if grep -q '^[A-Za-z0-9]' /opt/build/requirements.lock; then \
      PIP_CONFIG_FILE=/opt/build/pip/pip.conf PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install \
      --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r /opt/build/requirements.lock; fi \
 && python3 /opt/build/check.py \
 && rm -rf /opt/build
COPY app/ /opt/joulebench/
# The controller sets HF_HUB_OFFLINE for a model folder; a hub id is downloaded (serving has network).
ENV PYTHONPATH=/opt/joulebench HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1
USER 10001:10001
# Replaces vLLM's entrypoint (its server): the harness starts that server itself, on the spec's port.
ENTRYPOINT ["python3", "-m", "harness"]
# Provenance, read back into every run's record (controller.images.image_provenance).
ARG JOULEBENCH_IMAGE=unknown JOULEBENCH_SOURCE=unknown JOULEBENCH_HARNESS= JOULEBENCH_LOCK= BASE_IMAGE \
    BASE_DIGEST= BASE_PIN="unpinned: built by docker build itself, not by images build"
LABEL joulebench.image="${JOULEBENCH_IMAGE}" joulebench.source="${JOULEBENCH_SOURCE}" \
      joulebench.harness="${JOULEBENCH_HARNESS}" joulebench.lock="${JOULEBENCH_LOCK}" \
      joulebench.base="${BASE_IMAGE}" joulebench.base.digest="${BASE_DIGEST}" joulebench.base.pin="${BASE_PIN}"
