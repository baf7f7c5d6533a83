# images/python-slim.Dockerfile for llama.cpp (llama-cpp-python), whose PyPI release is an sdist
# only: pip compiles llama.cpp in the build stage. Differences:
# - the build stage installs a C++ toolchain from Debian (g++, make, cmake; apt works on
#   python:3.11-slim and on the debootstrap base alike) before the venv; the final stage gets only
#   the venv, so it carries no compiler.
# - llama.cpp is configured for the CPU only, with the smallest build: no multimodal (llava/mtmd)
#   library, no tests, examples, tools or server, no OpenSSL, and no OpenMP (ggml's own thread pool),
#   so the final image needs no libgomp. SIMD is fixed at SSE4.2/AVX/AVX2/BMI2/FMA/F16C (x86-64-v3)
#   instead of -march=native (GGML_NATIVE), so the image does not depend on the CPU it was built on.
# - the wheel stores each shared library three times (libllama.so, .so.0, .so.0.5.0: symlinks do
#   not survive a wheel); the two names are made symlinks again, which saves about 12 MB.
# The lock's sdist is hash-checked like every wheel; its build backend (scikit-build-core, from
# llama-cpp-python's pyproject.toml) is installed by pip into an isolated build environment from
# the same index, and not pinned by the lock (pip does not hash-check build dependencies).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE} AS build
ARG LOCK_PYTHON=3.11
COPY build/ /opt/build/
RUN python3 -c "import sys; v = '%d.%d' % sys.version_info[:2]; sys.exit(v != '${LOCK_PYTHON}' and \
      f'requirements.lock is for Python ${LOCK_PYTHON}; this base has {v}: use another base or relock')" \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++ make cmake \
 && python3 -m venv /opt/venv \
 && export CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF \
      -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
      -DGGML_OPENMP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
 && PIP_CONFIG_FILE=/opt/build/pip/pip.conf /opt/venv/bin/pip install --no-cache-dir \
      --disable-pip-version-check --require-hashes --no-deps -r /opt/build/requirements.lock \
 && cd /opt/venv/lib/python${LOCK_PYTHON}/site-packages/llama_cpp/lib \
 && for lib in lib*.so.*.*.*; do v=${lib#*.so.}; ln -sf "$lib" "${lib%%.so.*}.so.${v%%.*}"; ln -sf "$lib" "${lib%%.so.*}.so"; done \
 && cd / && /opt/venv/bin/python -c "import llama_cpp; print('llama_cpp', llama_cpp.__version__, llama_cpp.llama_print_system_info().decode())" \
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
