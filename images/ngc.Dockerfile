# Shared shape of the GPU images: an NVIDIA NGC base (CUDA, cuDNN, TensorRT and the framework
# built for current GPUs, Hopper included), pinned by digest in the image's manifest, plus the
# few packages the harness needs, a build-time check of what the image must contain, and the
# harness, run unprivileged. The GPU is handed in at run time (docker --gpus), never at build.
# The added packages are exactly images/<name>/requirements.lock (hashes checked, nothing
# resolved); the framework and what the manifest lists as from_base stay the base's own.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG LOCK_PYTHON
COPY build/ /opt/build/
RUN python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; sys.exit(v != '${LOCK_PYTHON}' and \
      f'requirements.lock is for Python ${LOCK_PYTHON}; this base has {v}: set python in the manifest and relock')" \
 && PIP_CONFIG_FILE=/opt/build/pip/pip.conf PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install \
      --no-cache-dir --disable-pip-version-check --require-hashes --no-deps -r /opt/build/requirements.lock \
 && python3 /opt/build/check.py \
 && rm -rf /opt/build
COPY app/ /opt/joulebench/
ENV PYTHONPATH=/opt/joulebench HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
# Replaces NGC's entrypoint script, whose banner would otherwise precede every harness output.
ENTRYPOINT ["python3", "-m", "harness"]
# Provenance, read back into every run's record (controller.images.image_provenance).
ARG JOULEBENCH_IMAGE=unknown JOULEBENCH_SOURCE=unknown JOULEBENCH_HARNESS= JOULEBENCH_LOCK= BASE_IMAGE \
    BASE_DIGEST= BASE_PIN="unpinned: built by docker build itself, not by images build"
LABEL joulebench.image="${JOULEBENCH_IMAGE}" joulebench.source="${JOULEBENCH_SOURCE}" \
      joulebench.harness="${JOULEBENCH_HARNESS}" joulebench.lock="${JOULEBENCH_LOCK}" \
      joulebench.base="${BASE_IMAGE}" joulebench.base.digest="${BASE_DIGEST}" joulebench.base.pin="${BASE_PIN}"
