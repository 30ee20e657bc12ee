# The demo client image (compose profile `demo`): CPU torch and the project's `client` extra in
# /opt/venv, a non-root user, work files (teacher cache, runs) in the /work volume.
#
#   docker build -f docker/client.Dockerfile -t vl2v-client .
#
# Same torch handling and layer order as docker/vendor.Dockerfile (see the comments there), so
# the two images share their torch layers.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv

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
COPY demo_world/ /tmp/src/demo_world/
COPY client_distiller/ /tmp/src/client_distiller/
RUN set -eu; \
    pip install -c /opt/torch-constraints.txt "/tmp/src[client]"; \
    rm -rf /tmp/src; \
    cd /; \
    client-distiller --help >/dev/null

ENV VL2V_CACHE_DIR=/work/cache \
    VL2V_DATA_DIR=/work/data \
    HF_HOME=/work/cache/huggingface \
    XDG_CACHE_HOME=/work/cache
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/client client \
    && mkdir -p /work/cache /work/runs \
    && chown -R client:client /work
COPY docker/demo-entrypoint.sh /usr/local/bin/demo-entrypoint.sh
USER client
WORKDIR /work
VOLUME ["/work"]
ENTRYPOINT ["/bin/sh", "/usr/local/bin/demo-entrypoint.sh"]
CMD ["client-distiller", "--help"]
