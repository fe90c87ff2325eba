#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with edgegen installed (editable).
# On Linux it also installs Debian/Ubuntu's OpenBLAS, which MLX's CPU backend needs to be fast
# (edgegen loads it automatically; `edgegen doctor` shows it). Pass --dev for the test and
# benchmark dependencies (PyTorch CPU, diffusers, transformers, the reference runtimes).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[test]"

if [ "$(uname -s)" = "Linux" ] && ! ldconfig -p 2>/dev/null | grep -q "libopenblas.so.0"; then
  if [ "$(id -u)" = "0" ]; then apt_get="apt-get"; elif command -v sudo >/dev/null; then apt_get="sudo apt-get"; else apt_get=""; fi
  if [ -n "$apt_get" ] && command -v apt-get >/dev/null; then
    $apt_get update -qq && DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq libopenblas0-pthread
  else
    echo "note: install OpenBLAS (libopenblas0-pthread) for fast MLX on CPU; see README" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
if [ -n "$extras" ]; then
  # open_clip_torch carries OpenAI's full CLIP merge list and tokenizer, the tests' independent
  # check of the list edgegen ships; --no-deps because its
  # declared dependencies would pull torchvision and a second (CUDA) torch build.
  .venv/bin/python -m pip install -q --no-deps "open_clip_torch==3.3.0" "ftfy==6.3.1" wcwidth
fi
.venv/bin/edgegen doctor --no-bench
