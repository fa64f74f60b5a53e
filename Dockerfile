# geotiler image. CPU by default:
#   docker build -t geotiler .
# CUDA (PyTorch's CUDA wheels; run with --gpus all):
#   docker build -t geotiler:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

# gdal-bin only for the benchmarks' reference tools; rasterio's wheels carry GDAL themselves.
# libgomp1: the OpenMP runtime LightGBM's wheel links to (the pixel baseline).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gdal-bin make libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/geotiler
COPY pyproject.toml constraints.txt README.md ./
COPY geotiler ./geotiler
COPY data_catalog.yaml ./
COPY pipelines ./pipelines
COPY models ./models

# torch first from the chosen index, so the pin in constraints.txt is already satisfied.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
    && pip install --no-cache-dir -c constraints.txt ".[onnx,plots,tensorboard]"

WORKDIR /data
ENTRYPOINT ["geotiler"]
CMD ["--help"]
