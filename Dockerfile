# CPU image for `kseg serve` (build not tested in kseg's CI; see README "Segmentation service").
#   docker build -t kseg-serve .
#   docker run --rm -p 9009:9009 -v $PWD/models:/models kseg-serve \
#       --model /models/unet_int8.tflite --host 0.0.0.0 --token "$KSEG_SERVE_TOKEN"
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# OpenCV's headless wheel still needs libGL-free system libraries only; add libgomp for TF kernels
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kseg
COPY pyproject.toml README.md ./
COPY kseg ./kseg
RUN pip install ".[serve]"

# an unprivileged user; models are mounted read-only at /models
RUN useradd --create-home --uid 10001 kseg
USER kseg
EXPOSE 9009
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:9009/healthz').status != 200)"
ENTRYPOINT ["kseg", "serve", "--port", "9009"]
CMD ["--help"]
