"""edgegen: offline on-device generation on MLX.

Importing the package first loads an optimized BLAS on Linux (see ``edgegen._blas``), because it
must happen before ``mlx.core`` is imported anywhere in the process.
"""

from edgegen import _blas

__version__ = "0.1.0"

BLAS = _blas.load()
