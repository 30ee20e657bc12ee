# The vendor service image: CPU torch and the project's `vendor` extra in /opt/venv, the demo
# teacher's files inside (/opt/demo-teacher: its open_clip config and weights, so it serves with
# no network; docker-compose.yml points the model settings at them), the ledger and the model
# cache in the /data volume, a non-root user. No demo-world code: any model is settings only.
#
#   docker build -f docker/vendor.Dockerfile -t vl2v-vendor .
#   docker build -f docker/vendor.Dockerfile --build-arg BASE_IMAGE=local/python:3.11-bookworm .
#
# Plain Dockerfile syntax only (no RUN --mount, no heredocs): docker-compose v1 and engines
# without BuildKit must build it too. One stage: the legacy builder copies a multi-stage venv
# (GBs with a CUDA torch) for minutes, and nothing large is left behind to strip. Call `python3`:
# Debian base images have only that name before the venv exists.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# PyPI's default torch for x86_64 is a multi-GB CUDA build; the CPU index keeps the image small.
# Use e.g. https://download.pytorch.org/whl/cu124 for a GPU image (see docker/gpu.override.yml).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv

# Torch first, in its own layer, so code changes do not reinstall it. Wheels placed in
# docker/wheels/ win over the index (offline builds; they stay in that COPY layer). The pins
# record what was installed so the project install below cannot swap it for PyPI's CUDA build.
COPY docker/wheels/ /tmp/wheels/
RUN set -eu; \
    if ls /tmp/wheels/torch-*.whl >/dev/null 2>&1; then \
        pip install /tmp/wheels/*.whl; \
    else \
        pip install --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi; \
    pip list --format=freeze | grep -iE '^(torch|torchvision)==' > /opt/torch-constraints.txt; \
    cat /opt/torch-constraints.txt

COPY pyproject.toml README.md /tmp/src/
COPY shared_schemas/ /tmp/src/shared_schemas/
COPY model_io/ /tmp/src/model_io/
COPY vendor_service/ /tmp/src/vendor_service/
COPY demo_world/model_configs/vl2v-demo-v3.json demo_world/weights/demo_teacher_v3.pt /opt/demo-teacher/
# A regular (not editable) install; then fail the build, not the first start, if the demo
# teacher's files do not load as an open_clip model or the CLI cannot import.
RUN set -eu; \
    pip install -c /opt/torch-constraints.txt "/tmp/src[vendor]"; \
    rm -rf /tmp/src; \
    cd /; \
    python3 -c "from model_io import check_loadable; check_loadable('vl2v-demo-v3', \
pretrained='/opt/demo-teacher/demo_teacher_v3.pt', config_dirs=['/opt/demo-teacher'])"; \
    vendor-service --help >/dev/null

ENV VENDOR_DATA_DIR=/data \
    HF_HOME=/data/cache/huggingface \
    TORCH_HOME=/data/cache/torch \
    XDG_CACHE_HOME=/data/cache
# A named volume copies /data's owner from the image on first use, so the non-root user can
# write the ledger and the model cache.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/vendor vendor \
    && mkdir -p /data/cache \
    && chown -R vendor:vendor /data
USER vendor
WORKDIR /home/vendor
VOLUME ["/data"]
EXPOSE 8000
# python, not curl: python:3.11-slim and Debian's minimal base have no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", \
         "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["vendor-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
