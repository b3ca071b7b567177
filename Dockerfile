FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator orchestrator
COPY workers workers
COPY api api
COPY kubesim kubesim
COPY bench bench
RUN pip install --no-cache-dir . && useradd --create-home rollway
USER rollway
EXPOSE 8080
CMD ["rollway", "serve", "--host", "0.0.0.0", "--port", "8080"]
