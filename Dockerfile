# gitops-sync as an Azure Functions (Python 3.11, v2 model) container.
# Layers go from least to most often changed: OS packages, Python dependencies, app code.
# The base is pinned to a Functions host release (4.1036.2, Python 3.11), not the moving
# `4-python3.11` tag: a rebuild gets the same host and Python worker until this line changes.
FROM mcr.microsoft.com/azure-functions/python:4.1036.2-python3.11

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The worker drives git as a subprocess (ls-tree, cat-file --batch, fetch); on a workspace
# whose modes stick it takes the directory stamps with xargs and GNU stat (findutils, coreutils).
RUN apt-get update \
 && apt-get install -y --no-install-recommends git findutils \
 && rm -rf /var/lib/apt/lists/*

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    PYTHON_ENABLE_INIT_INDEXING=1 \
    PYTHON_ISOLATE_WORKER_DEPENDENCIES=1 \
    WORKSPACE_ROOT=/workspace \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GITOPS_SYNC_CACHE_DIR=/var/cache/gitops-sync/repos

# Dependencies before code, so an edit under workflows/ reuses this layer.
COPY workflows/requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

# debugpy for ENABLE_DEBUGGING: docker-compose.dev.yml sets this; a production build leaves it
# out (the same pin as pyproject.toml's dev extra, checked by tests/unit/test_infra.py).
ARG INSTALL_DEBUGPY=""
RUN if [ -n "$INSTALL_DEBUGPY" ]; then pip install --no-cache-dir debugpy==1.8.22; fi

COPY workflows/ /home/site/wwwroot/
# Bytecode compiled once here (PYTHONDONTWRITEBYTECODE stops the worker writing it at run
# time). The workspace: the Azure Files share the Function App mounts here
# (azureStorageAccounts), a named volume under docker-compose.dev.yml.
RUN python -m compileall -q /home/site/wwwroot \
 && mkdir -p /workspace
VOLUME ["/workspace"]
