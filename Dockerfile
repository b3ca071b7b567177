FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator orchestrator
COPY workers workers
COPY api api
COPY kubesim kubesim
COPY bench bench
RUN pip install --no-cache-dir ".[flower]" && useradd --create-home rollway
USER rollway
EXPOSE 8080
# No secret is baked in: on 0.0.0.0 `rollway serve` refuses to start until ROLLWAY_API_TOKEN is given at run time
# (and ROLLWAY_SECRET_KEY, to store endpoint credentials).
CMD ["rollway", "serve", "--host", "0.0.0.0", "--port", "8080"]
