#!/usr/bin/env bash
# Deterministic install into ./.venv.
# torch and torchvision are pinned as a matching pair from the package registry:
# the CPU-only torch wheel some machines keep in a local find-links folder
# breaks `import torchvision`, and an unpinned torch could pull a newer release
# that no torchvision supports yet. The registry's build runs fine on CPU.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.2"
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import torch, torchvision; print('segbench env: torch', torch.__version__, 'torchvision', torchvision.__version__)"
