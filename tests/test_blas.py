"""OpenBLAS kernel choice: AVX-512 kernels when the CPU has them, never over the user's choice."""

import os
import subprocess
import sys

import pytest

from edgegen import _blas

AVX512 = {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}


def test_avx512_cpu_gets_skylakex_kernels():
    assert _blas.openblas_coretype(AVX512, {}) == "SkylakeX"


def test_cpu_without_all_avx512_subsets_keeps_openblas_choice():
    assert _blas.openblas_coretype({"avx2", "fma"}, {}) is None
    assert _blas.openblas_coretype(AVX512 - {"avx512bw"}, {}) is None


def test_user_coretype_is_never_overridden():
    assert _blas.openblas_coretype(AVX512, {"OPENBLAS_CORETYPE": "Haswell"}) is None
    assert _blas.openblas_coretype(AVX512, {"OPENBLAS_CORETYPE": ""}) is None


def _core_in_subprocess(env_extra):
    code = "import edgegen, os; print(edgegen.BLAS.core, os.environ.get('OPENBLAS_CORETYPE'))"
    env = {"EDGEGEN_BLAS": "openblas", "PATH": "/usr/bin:/bin", **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


@pytest.mark.skipif(sys.platform != "linux", reason="OpenBLAS is loaded on Linux only")
def test_loaded_openblas_reports_its_kernels_and_keeps_the_users_choice():
    core, _ = _core_in_subprocess({})
    if core == "None":
        pytest.skip("no OpenBLAS on this machine")
    assert core
    if os.uname().machine == "x86_64":
        assert _core_in_subprocess({"OPENBLAS_CORETYPE": "Haswell"}) == ["Haswell", "Haswell"]


def test_single_threaded_restores_openblas_threads():
    code = (
        "import ctypes, edgegen\n"
        "from edgegen import _blas\n"
        "if edgegen.BLAS.name != 'openblas':\n"
        "    print('skip'); raise SystemExit\n"
        "lib = ctypes.CDLL(edgegen.BLAS.path)\n"
        "lib.openblas_set_num_threads(2)\n"
        "with _blas.single_threaded():\n"
        "    with _blas.single_threaded():\n"
        "        inner = lib.openblas_get_num_threads()\n"
        "    middle = lib.openblas_get_num_threads()\n"
        "print(inner, middle, lib.openblas_get_num_threads())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    if out == ["skip"]:
        pytest.skip("OpenBLAS is not the loaded BLAS")
    assert out == ["1", "1", "2"]


def test_slow_blas_is_never_silent():
    missing = _blas.BlasInfo("reference", None, "no OpenBLAS or MKL found")
    note = _blas.slow_blas_note(missing, on_cpu=True)
    assert note.count("\n") == 0 and "35x slower" in note and "libopenblas0-pthread" in note
    assert _blas.slow_blas_note(missing, on_cpu=False) is None  # a GPU does not use it
    asked = _blas.BlasInfo("reference", None, "EDGEGEN_BLAS=none")
    assert _blas.slow_blas_note(asked, on_cpu=True) is None  # the user asked for it
    fast = _blas.BlasInfo("openblas", "/x/libopenblas.so.0", "auto", "Haswell")
    assert _blas.slow_blas_note(fast, on_cpu=True) is None


@pytest.mark.skipif(sys.platform != "linux", reason="edgegen chooses the BLAS on Linux only")
def test_commands_that_compute_say_when_blas_is_slow(tmp_path):
    env = {
        **os.environ,
        "EDGEGEN_BLAS": str(tmp_path / "missing.so"),
        "EDGEGEN_HOME": str(tmp_path),
    }

    def stderr(*args):
        run = subprocess.run(
            [sys.executable, "-m", "edgegen", *args], env=env, capture_output=True, text=True
        )
        return run.stderr

    said = stderr("speak", "Hi.", "-o", str(tmp_path / "hi.wav"))
    assert [line for line in said.splitlines() if "reference BLAS" in line] == [
        _blas.slow_blas_note(
            _blas.BlasInfo("reference", None, f"EDGEGEN_BLAS={tmp_path / 'missing.so'}"), True
        )
    ]
    assert "reference BLAS" not in stderr("speak", "--help")
    assert "reference BLAS" not in stderr("models", "list")
    env["EDGEGEN_BLAS"] = "auto"  # OpenBLAS, installed by the set-up
    assert "reference BLAS" not in stderr("speak", "Hi.", "-o", str(tmp_path / "hi.wav"))
