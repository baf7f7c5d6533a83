# Shared shape of the GPU images: an NVIDIA NGC base (CUDA, cuDNN, TensorRT and the framework
# built for current GPUs, Hopper included), pinned by digest in the image's manifest, plus the
# few packages the harness needs, a build-time check of what the image must contain, and the
# harness, run unprivileged. The GPU is handed in at run time (docker --gpus), never at build.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY build/ /opt/build/
RUN PIP_CONFIG_FILE=/opt/build/pip/pip.conf PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install \
      --no-cache-dir --disable-pip-version-check -r /opt/build/requirements.txt \
 && python3 /opt/build/check.py \
 && rm -rf /opt/build
COPY app/ /opt/joulebench/
ENV PYTHONPATH=/opt/joulebench HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
# Replaces NGC's entrypoint script, whose banner would otherwise precede every harness output.
ENTRYPOINT ["python3", "-m", "harness"]
ARG JOULEBENCH_IMAGE=unknown JOULEBENCH_SOURCE=unknown BASE_IMAGE
LABEL joulebench.image=${JOULEBENCH_IMAGE} joulebench.source=${JOULEBENCH_SOURCE} \
      joulebench.base=${BASE_IMAGE}
