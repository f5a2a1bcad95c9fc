#!/usr/bin/env bash
# One-command set-up of a tested stack in a virtual environment at the repository root,
# with mmsmlp installed in editable mode. Safe to run again: finished steps are skipped.
#
#   bash tools/install.sh [current|classic]
#
#   current (default)  .venv          Python 3.11, torch 2.13.0, numpy 2
#   classic            .venv-classic  Python 3.10, torch 2.1.2, numpy 1.26
#
# Both stacks: mmcv 2.1.0 with its ops, mmengine 0.10.7, mmdet 3.3.0, mmsegmentation
# 1.2.2, mmpretrain 1.2.0, timm (requirements/stacks/<stack>.txt pins every one).
#
# Environment:
#   MMSMLP_WHEELHOUSE  folder holding prebuilt mmcv-2.1.0 wheels (e.g. ../shared/wheels);
#                      the one for this Python is used, else mmcv is compiled from source
#                      against the installed torch (about 20 minutes on 2 cores).
#   PYTHON             interpreter used to create the venv (default: the stack's Python).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STACK=${1:-current}
case "$STACK" in
    current) VENV="$ROOT/.venv"; PYVER=3.11 ;;
    classic) VENV="$ROOT/.venv-classic"; PYVER=3.10 ;;
    *) echo "usage: bash tools/install.sh [current|classic]" >&2; exit 2 ;;
esac
PINS="$ROOT/requirements/stacks/$STACK.txt"

say() { printf '\n[install %s] %s\n' "$STACK" "$*"; }
die() { printf '\n[install %s] ERROR: %s\n' "$STACK" "$*" >&2; exit 1; }
pin() { sed -n "s/^$1==//p" "$PINS"; }

# pip's user configuration on some machines adds a find-links folder holding a CPU-only
# torch wheel that pip would prefer; torchvision from the registry cannot load against it.
# Ignore every pip configuration file for the whole set-up.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_NO_INDEX PIP_CONSTRAINT || true
export PIP_DISABLE_PIP_VERSION_CHECK=1

find_python() {
    # pyenv's shims fail for versions that are not selected: try real interpreters
    local cand
    for cand in "python$PYVER" "$(pyenv root 2>/dev/null)/versions/$PYVER"*/bin/"python$PYVER" \
                /root/.pyenv/versions/"$PYVER"*/bin/"python$PYVER"; do
        if "$cand" -c '' 2>/dev/null; then command -v "$cand"; return; fi
    done
}
PYTHON=${PYTHON:-$(find_python)}
[ -n "$PYTHON" ] || die "no Python $PYVER interpreter found (set PYTHON=...)"

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV" || die "could not create the virtual environment at $VENV"
fi
PY="$VENV/bin/python"
# every install of this stack is held to its pins
PIP=("$PY" -m pip install --progress-bar off -c "$PINS")

pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "$PYVER" ] || die "$VENV has Python $pyver; the $STACK stack needs $PYVER (remove $VENV)"

# setuptools < 81 still ships pkg_resources, which mmcv 2.1's build needs; < 80 and
# pip < 25.3 still make an editable install the legacy way (see below).
"$PY" -m pip install -q --progress-bar off "pip>=23,<25.3" "setuptools>=77,<80" wheel

# ---- torch + torchvision -------------------------------------------------------------
TORCH=$(pin torch); TORCHVISION=$(pin torchvision)
torch_ok() {
    TORCH=$TORCH TORCHVISION=$TORCHVISION "$PY" - <<'PY' 2>/dev/null
import os, torch, torchvision
assert torch.__version__.split('+')[0] == os.environ['TORCH'], torch.__version__
assert '+cpu' not in torch.__version__, torch.__version__
assert torchvision.__version__.split('+')[0] == os.environ['TORCHVISION']
import torchvision.ops
b = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
torchvision.ops.nms(b, torch.tensor([0.9, 0.8]), 0.5)
PY
}
if torch_ok; then
    say "torch $TORCH + torchvision $TORCHVISION already installed"
else
    say "installing torch $TORCH + torchvision $TORCHVISION (several GB, a few minutes)"
    "${PIP[@]}" torch torchvision numpy
    torch_ok || die "torchvision.ops.nms does not run against the installed torch
($("$PY" -c 'import torch; print(torch.__version__)' 2>&1)). A CPU-only torch from a local
wheel folder was probably picked up; remove it with '$PY -m pip uninstall -y torch' and rerun."
fi

# ---- mmcv 2.1.0 with ops -------------------------------------------------------------
MMCV=$(pin mmcv)
mmcv_ok() { MMCV=$MMCV "$PY" -c 'import os, mmcv, mmcv.ops; assert mmcv.__version__ == os.environ["MMCV"]' 2>/dev/null; }
if mmcv_ok; then
    say "mmcv $MMCV with ops already installed"
else
    wheel=""
    if [ -n "${MMSMLP_WHEELHOUSE:-}" ]; then
        [ -d "$MMSMLP_WHEELHOUSE" ] || die "MMSMLP_WHEELHOUSE=$MMSMLP_WHEELHOUSE is not a folder"
        tag=cp${PYVER/./}
        wheel=$(ls "$MMSMLP_WHEELHOUSE"/mmcv-"$MMCV"-"$tag"-"$tag"-*.whl 2>/dev/null | head -n 1 || true)
        [ -n "$wheel" ] || echo "[install $STACK] no mmcv-$MMCV $tag wheel in $MMSMLP_WHEELHOUSE; building from source"
    fi
    # mmcv's own runtime needs, so that its wheel can go in with --no-deps
    "${PIP[@]}" -q mmengine addict packaging Pillow pyyaml yapf opencv-python numpy
    if [ -n "$wheel" ]; then
        say "installing mmcv from $wheel"
        "${PIP[@]}" --no-deps "$wheel"
        # a wheel built for another torch fails here: fall back to a build
        mmcv_ok || { echo "[install $STACK] $wheel does not fit torch $TORCH; building from source"
                     "$PY" -m pip uninstall -y -q mmcv; wheel=""; }
    fi
    if [ -z "$wheel" ]; then
        say "building mmcv $MMCV with ops from source (about 20 minutes on 2 cores)"
        # --no-cache-dir: pip's wheel cache would reuse a wheel built against another torch.
        MMCV_WITH_OPS=1 "${PIP[@]}" --no-cache-dir --no-build-isolation --no-deps "mmcv==$MMCV"
    fi
    mmcv_ok || die "mmcv $MMCV installed but 'import mmcv.ops' fails: the build does not fit this torch"
fi

# ---- the rest of the stack and mmsmlp ------------------------------------------------
say "installing mmengine, mmdet, mmsegmentation, mmpretrain, timm and the test tools"
"${PIP[@]}" -q -r requirements/runtime.txt -r requirements/optional.txt -r requirements/tests.txt
say "installing mmsmlp (editable)"
# the legacy editable install (an egg-link to the repository): mim finds a package
# through its distribution's location, which a PEP 660 editable install leaves in
# site-packages, where mmsmlp/.mim does not exist
"${PIP[@]}" -q --no-deps --no-build-isolation --no-use-pep517 -e .

# ---- timm's own model tests ----------------------------------------------------------
# tests/test_models/test_timm_suite.py runs tests/test_models.py of the timm sdist (the
# wheel has no tests) over the smlpnet_* models
TIMM=$(pin timm)
TIMM_TESTS="$VENV/timm-tests"
if [ ! -f "$TIMM_TESTS/timm-$TIMM/tests/test_models.py" ]; then
    say "fetching the test suite of timm $TIMM (its sdist) into $TIMM_TESTS"
    rm -rf "$TIMM_TESTS"
    "$PY" -m pip download -q --no-deps --no-binary :all: "timm==$TIMM" -d "$TIMM_TESTS"
    tar -xzf "$TIMM_TESTS/timm-$TIMM.tar.gz" -C "$TIMM_TESTS"
fi

# ---- final check ---------------------------------------------------------------------
say "checking the stack"
"$PY" - "$PINS" <<'PY'
import importlib, re, sys
from importlib.metadata import version
failed = []
# the *.models imports load each codebase's registry locations (mmseg's needs ftfy)
for name in ['torch', 'torchvision.ops', 'numpy', 'mmengine', 'mmcv.ops', 'mmdet',
             'mmdet.models', 'mmseg', 'mmseg.models', 'mmpretrain', 'mmpretrain.models',
             'timm', 'mmsmlp']:
    try:
        mod = importlib.import_module(name)
        print(f'  ok   {name:17s} {getattr(mod, "__version__", "")}')
    except Exception as e:  # report every failure, not only the first
        failed.append(name)
        print(f'  FAIL {name:17s} {type(e).__name__}: {e}')
for line in open(sys.argv[1]):
    m = re.match(r'([A-Za-z0-9_.-]+)==(\S+)', line)
    if m and version(m.group(1)).split('+')[0] != m.group(2):
        failed.append(m.group(1))
        print(f'  FAIL {m.group(1)} is {version(m.group(1))}, pinned {m.group(2)}')
if failed:
    sys.exit('[install] these checks failed: ' + ', '.join(failed))
PY
say "done: activate with 'source ${VENV#$ROOT/}/bin/activate'"
