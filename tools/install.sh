#!/usr/bin/env bash
# One-command set-up: creates .venv at the repository root and installs the pinned stack
# (torch 2.13.0 + torchvision 0.28.0, mmcv 2.1.0 with ops, mmengine, mmdet, mmseg,
# mmpretrain, timm) and mmsmlp itself in editable mode. Safe to run again: finished
# steps are skipped.
#
#   bash tools/install.sh
#
# Environment:
#   MMSMLP_WHEELHOUSE  folder holding a prebuilt mmcv-2.1.0 wheel for this torch/python
#                      (e.g. ../shared/wheels); without it mmcv is compiled from source
#                      (about 20 minutes on 2 cores).
#   PYTHON             interpreter used to create the venv (default: python3.11, else python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
cd "$ROOT"

say() { printf '\n[install] %s\n' "$*"; }
die() { printf '\n[install] ERROR: %s\n' "$*" >&2; exit 1; }

# pip's user configuration on some machines adds a find-links folder holding a CPU-only
# torch wheel that pip would prefer; torchvision from the registry cannot load against it.
# Ignore every pip configuration file for the whole set-up.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_NO_INDEX || true
export PIP_DISABLE_PIP_VERSION_CHECK=1

PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -n "$PYTHON" ] || die "no python3 interpreter found (set PYTHON=...)"

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV" || die "could not create the virtual environment at $VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --progress-bar off)

pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "3.11" ] || echo "[install] warning: Python $pyver; the stack was checked on 3.11"

# setuptools < 81 still ships pkg_resources, which mmcv 2.1's build needs.
"${PIP[@]}" -q "pip>=23" "setuptools>=77,<81" wheel

# ---- torch + torchvision -------------------------------------------------------------
torch_ok() {
    "$PY" - <<'PY' 2>/dev/null
import torch, torchvision
assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__
assert '+cpu' not in torch.__version__, torch.__version__
assert torchvision.__version__.split('+')[0] == '0.28.0', torchvision.__version__
import torchvision.ops
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
torchvision.ops.nms(b, torch.tensor([0.9, 0.8]), 0.5)
PY
}
if torch_ok; then
    say "torch 2.13.0 + torchvision 0.28.0 already installed"
else
    say "installing torch 2.13.0 + torchvision 0.28.0 (several GB, a few minutes)"
    "${PIP[@]}" -r requirements/torch.txt
    torch_ok || die "torchvision.ops.nms does not run against the installed torch
($("$PY" -c 'import torch; print(torch.__version__)' 2>&1)). A CPU-only torch from a local
wheel folder was probably picked up; remove it with '$PY -m pip uninstall -y torch' and rerun."
fi

# ---- mmcv 2.1.0 with ops -------------------------------------------------------------
mmcv_ok() { "$PY" -c 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; }
if mmcv_ok; then
    say "mmcv 2.1.0 with ops already installed"
else
    wheel=""
    if [ -n "${MMSMLP_WHEELHOUSE:-}" ]; then
        [ -d "$MMSMLP_WHEELHOUSE" ] || die "MMSMLP_WHEELHOUSE=$MMSMLP_WHEELHOUSE is not a folder"
        wheel=$(ls "$MMSMLP_WHEELHOUSE"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
        [ -n "$wheel" ] || echo "[install] no mmcv-2.1.0 wheel in $MMSMLP_WHEELHOUSE; building from source"
    fi
    # mmcv's own runtime needs, so that its wheel can go in with --no-deps
    "${PIP[@]}" -q "mmengine==0.10.7" addict packaging Pillow pyyaml yapf opencv-python "numpy<3"
    if [ -n "$wheel" ]; then
        say "installing mmcv from $wheel"
        "${PIP[@]}" --no-deps "$wheel"
    else
        say "building mmcv 2.1.0 with ops from source (about 20 minutes on 2 cores)"
        # --no-cache-dir: pip's wheel cache would reuse a wheel built against another torch.
        MMCV_WITH_OPS=1 "${PIP[@]}" --no-cache-dir --no-build-isolation --no-deps "mmcv==2.1.0"
    fi
    mmcv_ok || die "mmcv 2.1.0 installed but 'import mmcv.ops' fails: the wheel does not fit this torch"
fi

# ---- the rest of the stack and mmsmlp ------------------------------------------------
say "installing mmengine, mmdet, mmsegmentation, mmpretrain, timm, openmim, pytest"
"${PIP[@]}" -q -r requirements/runtime.txt -r requirements/tests.txt
say "installing mmsmlp (editable)"
"${PIP[@]}" -q --no-deps --no-build-isolation -e .

# ---- final check ---------------------------------------------------------------------
say "checking the stack"
"$PY" - <<'PY'
import importlib, sys
failed = []
# the *.models imports load each codebase's registry locations (mmseg's needs ftfy)
for name in ['torch', 'torchvision.ops', 'mmengine', 'mmcv.ops', 'mmdet', 'mmdet.models',
             'mmseg', 'mmseg.models', 'mmpretrain', 'mmpretrain.models', 'timm',
             'mmsmlp']:
    try:
        mod = importlib.import_module(name)
        print(f'  ok   {name:16s} {getattr(mod, "__version__", "")}')
    except Exception as e:  # report every failure, not only the first
        failed.append(name)
        print(f'  FAIL {name:16s} {type(e).__name__}: {e}')
if failed:
    sys.exit('[install] these imports failed: ' + ', '.join(failed))
PY
say "done: activate with 'source .venv/bin/activate'"
