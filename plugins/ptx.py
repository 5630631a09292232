"""Which PTX ISA version an AOT plugin's PTX may use: what the driver of this machine accepts, or $ZOO_PTX_VERSION.

Triton emits the newest PTX ISA of the CUDA it bundles (9.4 with Triton 3.9), while a driver loads only the ISA of
its own CUDA version or older: the lent H200's driver 580 (CUDA 13.0) takes at most 9.0, so unmodified PTX fails
there with CUDA_ERROR_UNSUPPORTED_PTX_VERSION when the engine runs. Every AOT plugin asks `ptx_version()` and
passes the answer to `triton.compile(options={"ptx_version": ...})`.

- `ZOO_PTX_VERSION` (e.g. `85` or `8.5`) wins when set: for an engine built here to run on a machine with an older
  driver. It is checked: Triton's code generation needs ISA 8.0 at least (lower values abort the process inside
  LLVM), and no CUDA release has an ISA above 9.9 yet.
- Otherwise the ISA is capped at the driver's (`cuDriverGetVersion`), and left to Triton where no driver is found.
- It is capped by the assembler Triton will run too, which depends on the GPU: Triton 3.9 assembles sm < 90 with
  its `ptxas` (CUDA 12.9: PTX 8.8 at most) and sm >= 90 with its newer `ptxas-blackwell` (CUDA 13.4)
  (triton/backends/nvidia/compiler.py, `get_ptxas(arch)`), so an A100/L4/L40S/RTX 30-40 on a 580 driver gets 8.8,
  not the driver's 9.0, which that ptxas would refuse ("Unsupported .version 9.0"). The limit is Triton's own
  answer (`ptx_get_version` of that ptxas's CUDA version), so it follows Triton's releases.
"""
from __future__ import annotations

import os

VARIABLE = "ZOO_PTX_VERSION"
MIN_PTX = 80   # PTX ISA 8.0 (CUDA 12.0): the oldest that Triton's NVPTX back end generates code for
MAX_PTX = 99


class PtxVersionError(ValueError):
    pass


def driver_ptx_limit(driver_version: int) -> int:
    """The newest PTX ISA a driver accepts, from its CUDA version as cuDriverGetVersion reports it (13000 = 13.0).

    The ISA follows the CUDA release: 11.x -> 7.x, 12.0..12.5 -> 8.0..8.5, 12.6 -> 8.5 (no new ISA), 12.7+ ->
    one below the minor (12.8 -> 8.7, 12.9 -> 8.8), 13.x -> 9.x."""
    major, minor = driver_version // 1000, driver_version % 1000 // 10
    if major >= 13:
        return 90 + (major - 13) * 10 + minor
    if major == 12:
        return 80 + minor if minor < 6 else 79 + minor
    if major == 11:
        return 70 + minor
    return 60 + minor


def driver_version() -> int | None:
    """The CUDA version of the installed driver (e.g. 13000), or None without a driver or cuda-python."""
    try:
        from cuda.bindings import driver
        err, version = driver.cuDriverGetVersion()
    except Exception:  # no cuda-python, or no driver library: nothing to cap against
        return None
    return int(version) if int(err) == 0 and version else None


def parse_ptx_version(text: str) -> int:
    """'85' or '8.5' -> 85, checked against what Triton can generate."""
    raw = text.strip()
    try:
        value = round(float(raw) * 10) if "." in raw else int(raw)
    except ValueError:
        raise PtxVersionError(f"{VARIABLE}={raw[:20]!r} is not a PTX ISA version such as 85 or 8.5") from None
    if not MIN_PTX <= value <= MAX_PTX:
        raise PtxVersionError(f"{VARIABLE}={raw[:20]} is out of range (allowed: {MIN_PTX // 10}.{MIN_PTX % 10} to "
                              f"{MAX_PTX // 10}.{MAX_PTX % 10}; Triton cannot generate older PTX)")
    return value


def assembler_ptx_limit(cc: int) -> int | None:
    """The newest PTX ISA the ptxas Triton runs for compute capability `cc` reads, or None without Triton."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas, ptx_get_version
        return int(ptx_get_version(get_ptxas(int(cc)).version))
    except Exception:  # no triton, another layout, no ptxas binary: nothing to cap against
        return None


def _isa(value: int) -> str:
    return f"{value // 10}.{value % 10}"


def ptx_version(environ=os.environ, driver: int | None | str = "probe", cc: int | None = None,
                assembler: int | None | str = "probe") -> int | None:
    """The PTX ISA to compile for (e.g. 90), or None to keep Triton's default (no driver here to ask). With `cc`,
    also at most what Triton's assembler for that GPU reads."""
    limit = None
    if cc is not None:
        limit = assembler_ptx_limit(cc) if assembler == "probe" else assembler
    if environ.get(VARIABLE, "").strip():
        chosen = parse_ptx_version(environ[VARIABLE])
        if limit is not None and chosen > limit:
            raise PtxVersionError(f"{VARIABLE}={_isa(chosen)} is newer than the PTX ISA {_isa(limit)} that Triton's "
                                  f"assembler for sm_{cc} reads; use {_isa(limit)} or older")
        return chosen
    version = driver_version() if driver == "probe" else driver
    if version is None:
        return limit
    accepted = driver_ptx_limit(version)
    if accepted < MIN_PTX:
        raise PtxVersionError(f"the driver's CUDA {version // 1000}.{version % 1000 // 10} accepts PTX ISA up to "
                              f"{_isa(accepted)}, but Triton generates {MIN_PTX // 10}.0 or newer: update "
                              f"the NVIDIA driver")
    return accepted if limit is None else min(accepted, limit)
