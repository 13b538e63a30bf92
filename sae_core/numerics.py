"""One code path for CPU arithmetic, so a command gives the same bytes on any x86-64 machine.

torch picks its CPU kernels by what the processor offers: ATen's vectorised kernels,
MKL's GEMM and oneDNN's convolutions each have AVX2 and AVX-512 versions, and they
round differently. SAE training turns a last-bit difference in the activations into
different features, and so into different labels and studies: the README's chain built
on an AVX-512 machine failed on another machine of the same kind (issue 15). Measured
here on the README chain (12 tracks): the AVX-512 default, ATen at AVX2 only, and all
three at AVX2 gave three different activation files; with all three pinned, limiting MKL
further (``MKL_ENABLE_INSTRUCTIONS=AVX2``, what a machine without AVX-512 does) changed
no byte.

So the command-line tools pin all three to AVX2, which every x86-64 machine of the last
decade has, before torch is imported: ``ATEN_CPU_CAPABILITY`` (ATen dispatch),
``MKL_CBWR`` (MKL's conditional numerical reproducibility) and ``ONEDNN_MAX_CPU_ISA``.
Each is only a default: a variable already set in the environment wins, and
``SAE_CORE_NATIVE_CPU=1`` leaves all three alone (the fastest kernels, machine-dependent
bits). What stays machine-dependent: the number of threads (reductions split by thread;
machines with the same core count agree) and the GPU, which these variables do not touch.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping

PINNED_CPU_NUMERICS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def pin_cpu_numerics(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the variables of :data:`PINNED_CPU_NUMERICS` where unset; return what is in effect.

    Must run before torch is imported (the libraries read them once, when they start).
    """
    if environ.get("SAE_CORE_NATIVE_CPU") == "1" or platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    for name, value in PINNED_CPU_NUMERICS.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in PINNED_CPU_NUMERICS}
