"""Verilator co-simulation of `deepfpga_accel`: build (cached) and drive through ctypes.

`build_model(verilog, data_bits)` verilates the design together with the C++ harness
(`harness/harness.cpp`, `harness/ddr.h`: behavioural AXI4 DDR slave, AXI4-Lite master, trace
collection) into one shared library. Builds are cached under
`~/.cache/deepfpga/verilator/<key>` (or `$DEEPFPGA_CACHE/verilator`), the key being the
SHA-256 of the Verilog, the harness sources, the Verilator version and the build flags; a build
happens in a temporary directory that is renamed into place, so concurrent builders never see
half a library.

`Harness(build, cfg)` loads the library (one simulated accelerator with its own DDR array per
instance) and exposes whole operations: DDR reads/writes, register accesses, run-until-irq.
Every cycle runs in C++.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from deepfpga.errors import InputError
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.rtl.accel import spec

VERILATOR = os.environ.get("DEEPFPGA_VERILATOR", "verilator")
HARNESS_SOURCES = ("harness.cpp", "ddr.h")
LIBRARY = "libdfh.so"
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--threads", "1",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "-Wno-UNOPTFLAT")
CXX_FLAGS = ("-O2", "-fPIC", "-fvisibility=hidden")
LD_FLAGS = ("-shared", "-Wl,--exclude-libs,ALL", "-Wl,-Bsymbolic")
MAKE_FLAGS = "OPT_FAST=-O3 OPT_SLOW=-O1 OPT_GLOBAL=-O2"    # default OPT_FAST is -Os; -O3: +7 %
STAT_NAMES = ("read_bursts", "write_bursts", "read_beats", "write_beats", "read_bytes",
              "write_bytes", "decerr_bursts")


class HarnessError(RuntimeError):
    """The co-simulation failed: the DDR model refused a transaction, a register access got no
    answer, or the build broke (not bad user input)."""


@dataclass(frozen=True)
class Build:
    library: Path
    key: str
    data_bits: int
    seconds: float          # time this call spent (build, or ~0 when cached)
    cached: bool

    @property
    def directory(self) -> Path:
        return self.library.parent


def cache_root() -> Path:
    base = os.environ.get("DEEPFPGA_CACHE")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")
                                        ) / "deepfpga"
    return root / "verilator"


@functools.cache
def verilator_version() -> str:
    exe = shutil.which(VERILATOR)
    if exe is None:
        raise HarnessError(f"{VERILATOR!r} not found: install Verilator (Debian: apt-get install"
                           " verilator)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def harness_source(name: str) -> str:
    return resources.files("deepfpga.rtl.accel").joinpath("harness", name).read_text()


def build_key(verilog: str, data_bits: int) -> str:
    h = hashlib.sha256()
    for part in (verilog, *(harness_source(n) for n in HARNESS_SOURCES), verilator_version(),
                 " ".join((*VERILATOR_FLAGS, *CXX_FLAGS, *LD_FLAGS, MAKE_FLAGS)),
                 str(data_bits)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def build_model(verilog: str, data_bits: int, *, cache_dir: Path | None = None, jobs: int = 2,
                timeout_s: float = 1800.0) -> Build:
    """The harness library for this Verilog (top `deepfpga_accel`, AXI data width
    `data_bits`), built once per key."""
    if data_bits not in (32, 64, 128, 256):
        raise InputError(f"AXI data width {data_bits} is not 32, 64, 128 or 256")
    t0 = time.perf_counter()
    root = cache_dir or cache_root()
    key = build_key(verilog, data_bits)
    final = root / key
    lib = final / LIBRARY
    if lib.is_file():
        return Build(lib, key, data_bits, time.perf_counter() - t0, True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}.", dir=root))
    try:
        _verilate(tmp, verilog, data_bits, jobs, timeout_s)
        try:
            tmp.rename(final)
        except OSError:                 # another process finished the same build first
            if not lib.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Build(lib, key, data_bits, time.perf_counter() - t0, False)


def _verilate(work: Path, verilog: str, data_bits: int, jobs: int, timeout_s: float) -> None:
    (work / "accel.v").write_text(verilog)
    for n in HARNESS_SOURCES:
        (work / n).write_text(harness_source(n))
    cflags = " ".join((*CXX_FLAGS, f"-DDFH_BEAT_BYTES={data_bits // 8}", f"-I{work}"))
    cmd = [shutil.which(VERILATOR) or VERILATOR, "--cc", "accel.v", "--top-module", spec.TOP_NAME,
           "--prefix", "Vaccel", *VERILATOR_FLAGS, "--Mdir", "obj", "--build", "-j", str(jobs),
           "--exe", "harness.cpp", "-CFLAGS", cflags, "-LDFLAGS", " ".join(LD_FLAGS),
           "-MAKEFLAGS", MAKE_FLAGS, "-o", f"../{LIBRARY}"]
    try:
        r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"verilator build timed out after {timeout_s:.0f} s") from None
    (work / "build.log").write_text(f"$ {' '.join(cmd)}\n{r.stdout}\n{r.stderr}")
    if r.returncode != 0 or not (work / LIBRARY).is_file():
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-25:])
        raise HarnessError(f"verilator build failed (exit {r.returncode}):\n{tail}")
    shutil.rmtree(work / "obj", ignore_errors=True)     # the library is all we keep


# --- the library through ctypes ------------------------------------------------------------------

_VP, _U64, _I64, _U32 = ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64, ctypes.c_uint32
_P_I64 = ctypes.POINTER(ctypes.c_int64)
_SIGNATURES = {
    "dfh_create": (_VP, [_U64, _I64, ctypes.c_double, ctypes.c_int]),
    "dfh_destroy": (None, [_VP]),
    "dfh_beat_bytes": (ctypes.c_int, []),
    "dfh_ddr_size": (_U64, [_VP]),
    "dfh_ddr_write": (ctypes.c_int, [_VP, _U64, ctypes.c_char_p, _U64]),
    "dfh_ddr_read": (ctypes.c_int, [_VP, _U64, ctypes.c_void_p, _U64]),
    "dfh_reg_write": (ctypes.c_int, [_VP, _U32, _U32]),
    "dfh_reg_read": (ctypes.c_int, [_VP, _U32, ctypes.POINTER(_U32)]),
    "dfh_run": (ctypes.c_int, [_VP, _U32, _U64, _U32]),
    "dfh_idle": (ctypes.c_int, [_VP, _U64]),
    "dfh_cycle": (_I64, [_VP]),
    "dfh_run_cycles": (_I64, [_VP]),
    "dfh_irq": (ctypes.c_int, [_VP]),
    "dfh_error": (ctypes.c_char_p, [_VP]),
    "dfh_note_count": (_U64, [_VP]),
    "dfh_note": (ctypes.c_char_p, [_VP, _U64]),
    "dfh_trace": (_U64, [_VP, _P_I64, _P_I64, _P_I64, _P_I64, _U64]),
    "dfh_stats": (None, [_VP, ctypes.POINTER(_U64)]),
    "dfh_txn_count": (_U64, [_VP]),
    "dfh_watch": (_I64, [_VP, _I64, _U64, _U64]),
    "dfh_watch_clear": (None, [_VP]),
    "dfh_watch_get": (ctypes.c_int, [_VP, _I64, ctypes.c_void_p]),
    "dfh_txns": (_U64, [_VP, _U64, _P_I64, _U64]),
}


@functools.cache
def _load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    for name, (res, args) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _ptr(a: np.ndarray) -> ctypes._Pointer:
    return a.ctypes.data_as(_P_I64)


@dataclass(frozen=True)
class Run:
    """One START-to-irq run. `status`: "irq", "timeout" or "refused" (the DDR model stopped
    it: `error` says why). Trace arrays are per instruction index from PROG_ADDR (-1: no
    event); `engine` 0 LOAD, 1 CALC, 2 SAVE."""

    status: str
    cycles: int
    error: str
    start: np.ndarray
    end: np.ndarray
    sat: np.ndarray
    engine: np.ndarray
    dropped: int


class Harness:
    """One simulated accelerator and its DDR, from a `Build`. Close it (or use `with`)."""

    def __init__(self, build: Build, ddr_bytes: int, *, burst_overhead_cycles: int,
                 ddr_bytes_per_cycle: float, log_transactions: bool = False):
        self._h = None
        if not 0 < int(ddr_bytes) <= 1 << spec.AXI_ADDR_BITS:
            raise InputError(f"DDR array of {ddr_bytes} bytes: must be 1..2^{spec.AXI_ADDR_BITS}")
        self._lib = _load(str(build.library))
        if self._lib.dfh_beat_bytes() * 8 != build.data_bits:
            raise HarnessError(f"{build.library} was built for another AXI data width")
        self.beat_bytes = build.data_bits // 8
        self._h = self._lib.dfh_create(int(ddr_bytes), int(burst_overhead_cycles),
                                       float(ddr_bytes_per_cycle), int(log_transactions))
        self.ddr_bytes = int(ddr_bytes)
        self._watch_len: dict[int, int] = {}

    @classmethod
    def for_config(cls, build: Build, cfg: AcceleratorConfig, ddr_bytes: int,
                   log_transactions: bool = False) -> Harness:
        return cls(build, ddr_bytes, burst_overhead_cycles=cfg.burst_overhead_cycles,
                   ddr_bytes_per_cycle=cfg.ddr_bytes_per_cycle, log_transactions=log_transactions)

    def close(self) -> None:
        if self._h:
            self._lib.dfh_destroy(self._h)
            self._h = None

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_lib", None) is not None:
            self.close()

    # --- DDR -------------------------------------------------------------------------------
    def write_ddr(self, addr: int, data: bytes | np.ndarray) -> None:
        b = bytes(data) if not isinstance(data, bytes) else data
        if self._lib.dfh_ddr_write(self._h, int(addr), b, len(b)):
            raise InputError(f"DDR write [{addr}, {addr + len(b)}) outside the"
                             f" {self.ddr_bytes}-byte DDR array")

    def read_ddr(self, addr: int, n: int) -> np.ndarray:
        out = np.empty(int(n), dtype=np.uint8)
        if self._lib.dfh_ddr_read(self._h, int(addr), out.ctypes.data, int(n)):
            raise InputError(f"DDR read [{addr}, {addr + n}) outside the"
                             f" {self.ddr_bytes}-byte DDR array")
        return out

    # --- registers -------------------------------------------------------------------------
    def _check(self, rc: int, what: str) -> None:
        if rc:
            raise HarnessError(f"{what}: {self.error or 'failed'}")

    def write_reg(self, reg: int, value: int) -> None:
        self._check(self._lib.dfh_reg_write(self._h, int(reg), int(value) & 0xFFFFFFFF),
                    f"register write 0x{int(reg):02x}")

    def read_reg(self, reg: int) -> int:
        v = _U32(0)
        self._check(self._lib.dfh_reg_read(self._h, int(reg), ctypes.byref(v)),
                    f"register read 0x{int(reg):02x}")
        return int(v.value)

    # --- running ---------------------------------------------------------------------------
    def run(self, trace_n: int, max_cycles: int = 1 << 40) -> Run:
        """CTRL.START, then clock until irq (or `max_cycles`)."""
        rc = self._lib.dfh_run(self._h, int(spec.Reg.CTRL), int(max_cycles), int(trace_n))
        if rc == -2:
            raise HarnessError(f"START: {self.error}")
        n = int(trace_n)
        arrs = [np.empty(n, dtype=np.int64) for _ in range(4)]
        dropped = int(self._lib.dfh_trace(self._h, *(_ptr(a) for a in arrs), n))
        status = {0: "irq", 1: "timeout", -1: "refused"}[rc]
        return Run(status, int(self._lib.dfh_run_cycles(self._h)),
                   self.error if rc == -1 else "", *arrs, dropped)

    def watch(self, index: int, addr: int, n: int) -> int:
        """Copy DDR [addr, addr + n) when instruction `index` (from PROG_ADDR) ends, in every
        later run; returns the watch id for `watched`."""
        wid = int(self._lib.dfh_watch(self._h, int(index), int(addr), int(n)))
        if wid < 0:
            raise InputError(f"watch [{addr}, {addr + n}) outside the DDR array")
        self._watch_len[wid] = int(n)
        return wid

    def clear_watches(self) -> None:
        self._lib.dfh_watch_clear(self._h)
        self._watch_len = {}

    def watched(self, wid: int) -> np.ndarray | None:
        """The bytes watch `wid` copied in the last run (None: its instruction never ended)."""
        out = np.empty(self._watch_len[wid], dtype=np.uint8)
        return out if self._lib.dfh_watch_get(self._h, int(wid), out.ctypes.data) == 0 else None

    def idle(self, cycles: int) -> None:
        self._check(self._lib.dfh_idle(self._h, int(cycles)), "idle")

    @property
    def cycle(self) -> int:
        return int(self._lib.dfh_cycle(self._h))

    @property
    def irq(self) -> bool:
        return bool(self._lib.dfh_irq(self._h))

    @property
    def error(self) -> str:
        return self._lib.dfh_error(self._h).decode()

    def notes(self) -> list[str]:
        return [self._lib.dfh_note(self._h, k).decode()
                for k in range(self._lib.dfh_note_count(self._h))]

    def stats(self) -> dict[str, int]:
        out = (_U64 * len(STAT_NAMES))()
        self._lib.dfh_stats(self._h, out)
        return dict(zip(STAT_NAMES, (int(v) for v in out), strict=True))

    def transactions(self, first: int = 0) -> np.ndarray:
        """The burst log (with `log_transactions`): rows of (write, addr, beats, accepted,
        first beat, last beat) in harness cycles."""
        n = max(0, int(self._lib.dfh_txn_count(self._h)) - first)
        out = np.empty((n, 6), dtype=np.int64)
        if n:
            self._lib.dfh_txns(self._h, int(first), _ptr(out), n)
        return out
