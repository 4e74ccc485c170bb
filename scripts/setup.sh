#!/usr/bin/env bash
# Set up the project-local Python environment (.venv) that acktr-torch (the libtorch backend)
# and the Gymnasium bridge build against:
# libtorch 2.13.0 from PyPI's torch wheel (what tch 0.26 wants), and, when present,
# the Gymnasium packages of python/requirements-gym.txt. Idempotent: fast when already done.
# .cargo/config.toml points LIBTORCH at .venv/torch, the link this script makes.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c 'import sys, torch; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
  echo "setup: installing torch==2.13.0 into .venv (about 4.7 GB, a few minutes)" >&2
  .venv/bin/pip install --quiet torch==2.13.0
fi
# The stamp records which requirements file was installed; the import check catches a
# venv that lost packages. (pip's own --dry-run prints nothing under --quiet, so it
# cannot tell "satisfied" from "missing".)
req=python/requirements-gym.txt
stamp=.venv/.requirements-gym.sha256
if [ -f "$req" ]; then
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] \
    || ! .venv/bin/python -c 'import numpy, gymnasium, ale_py, minatar, mujoco' 2>/dev/null; then
    echo "setup: installing the Gymnasium packages into .venv" >&2
    .venv/bin/pip install --quiet -r "$req"
    .venv/bin/python -c 'import numpy, gymnasium, ale_py, minatar, mujoco'
    echo "$want" >"$stamp"
  fi
fi
ln -sfn "$(.venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" .venv/torch
