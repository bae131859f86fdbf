"""Functional simulator: executes a compiled program bit-exactly, instruction by instruction.

State: a byte-addressed DDR image and the four on-chip buffers with the config's capacities
(entries). A batch of N inputs runs in one pass over the program: the program does not depend
on the data, so every buffer and the feature-map part of DDR carry a sample axis, while the
constant part of DDR (weights, biases) is shared and a buffer remembers which entries hold the
same value in every sample (so an FC layer is one matrix product over the batch, not N).

Each instruction is executed whole and vectorised (a CALC is a matrix product, never a loop over
pixels), in program order — one valid interleaving of the three engines. `deepfpga.sim.hazards`
proves the program safe in *every* interleaving its dependency tokens allow (vector clocks,
per-entry and per-byte access records); this module is the machine itself.

The products of consecutive CALCs on the same input tile are computed together, when something
could observe them (a LOAD into that tile or from DDR, a CALC on another tile, an END, the end of
a stage); the SAVEs in between move their data then, in program order. So checks of an
instruction's accesses happen in program order, while errors found in the arithmetic itself
(accumulator overflow, saving values that were never finalized) may be reported after the checks
of a few later instructions.

It stops with an error naming the instruction for: a buffer, DDR or region access out of range,
a read of buffer entries never written, a read of DDR feature-map bytes never written, a token
pop with no earlier matching push (underflow) or tokens left at an END, a race, an accumulator
overflow, and malformed fields. Host layers run between accelerator segments through the
reference executor's layer code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from deepfpga.compiler.artifact import AccelStep, HostEntry, Manifest, TensorEntry
from deepfpga.errors import InputError
from deepfpga.hw.config import AcceleratorConfig
from deepfpga.hw.isa import End, Instruction, Program, decode_program
from deepfpga.ir.layers import Add
from deepfpga.quant.gemm import Method
from deepfpga.sim.hazards import DdrMap, SimulationError
from deepfpga.sim.machine import Machine

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Compiled


@dataclass(frozen=True)
class FunctionalResult:
    """`layers[name]`: the integer output of every stage (under the name of its last fused
    layer) and host layer; `outputs[name]`: the graph outputs (float for a host-only final
    layer); `saturations[layer]`: values saturated per CONV/FC (and host) layer, over the
    batch. Arrays have a leading batch axis when the input had one."""

    outputs: Mapping[str, np.ndarray]
    layers: Mapping[str, np.ndarray]
    saturations: Mapping[str, int]
    executed: int
    stats: Mapping[str, int] = field(default_factory=dict)

    @property
    def output(self) -> np.ndarray:
        if len(self.outputs) != 1:
            raise InputError(f"graph has {len(self.outputs)} outputs: use .outputs")
        return next(iter(self.outputs.values()))


# --- host layers ---------------------------------------------------------------------------------

def _host_layer(step: HostEntry, inputs: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """One host layer on a batch of integer inputs, through the reference executor."""
    from deepfpga.ir import INPUT, Graph
    from deepfpga.quant.qmodel import LayerFormats, QuantizedModel
    from deepfpga.quant.reference import execute, execute_layer

    fin, fout = step.in_formats, step.out_format
    if len(inputs) != 1:
        return _host_multi(step, inputs)
    layer = dataclasses.replace(step.spec, inputs=(INPUT,))
    g = Graph(f"host-{layer.name}", tuple(inputs[0].shape[1:]), (layer,), (layer.name,))
    q = QuantizedModel(g, fin[0], {layer.name: LayerFormats(fin[0], fout)}, {})
    if step.float_output:     # the reference keeps such outputs float
        r = execute(q, inputs[0])
        return r.outputs[layer.name], int(r.saturations.get(layer.name, 0))
    y, n = execute_layer(q, layer.name, [inputs[0]])
    return y, int(n)


def _host_multi(step: HostEntry, inputs: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """A multi-input host layer (the add): the contract's integer rule, as the reference."""
    from deepfpga.quant.contract import add_int

    if not isinstance(step.spec, Add):
        raise InputError(f"host layer {step.layer!r} ({step.spec.kind}) has several inputs;"
                         " only an add may")
    return add_int(inputs, [f.fl for f in step.in_formats], step.out_format)


def host_step(step: HostEntry, tensors: Mapping[str, TensorEntry],
              host: Mapping[str, np.ndarray], from_ddr: Callable[[str], np.ndarray], n: int
              ) -> tuple[np.ndarray, int]:
    """One host step of a manifest's schedule on a batch of `n`: its inputs from `host` (the
    host's own results) or read from DDR by `from_ddr(name)`, through the reference executor.
    Returns the output and the values it saturated (the RTL driver runs host steps with it)."""
    xs = []
    for name, shp in zip(step.inputs, step.input_shapes, strict=True):
        if name in host:
            v = host[name]
        elif tensors[name].on_ddr:
            v = from_ddr(name)
        else:
            raise InputError(f"host layer {step.layer!r}: tensor {name!r} unavailable")
        xs.append(np.asarray(v).reshape(n, *shp))
    return _host_layer(step, xs)


# --- entry point ---------------------------------------------------------------------------------

def _check_image(ddr_image: bytes, manifest: Manifest, cfg: AcceleratorConfig) -> None:
    """Check loose parts of a compiled program (DDR image, manifest, config) against each other,
    as building a `Compiled` does."""
    if manifest.config.hash != cfg.hash().hex():
        raise InputError("manifest was written for a different accelerator configuration")
    if len(ddr_image) != manifest.ddr_size:
        raise InputError(f"DDR image is {len(ddr_image)} bytes, the manifest says"
                         f" {manifest.ddr_size}")


def check_input(manifest: Manifest, x_int: np.ndarray) -> tuple[np.ndarray, bool]:
    """Check an input against the manifest's input tensor; returns it as a batch and whether
    one sample was given (shared with the RTL driver)."""
    t = manifest.tensors[manifest.input]
    shape = t.shape
    x = np.asarray(x_int)
    if x.dtype.kind not in "iu":
        raise InputError(f"input must be integers in the input format, got dtype {x.dtype}")
    single = x.shape == shape
    if single:
        x = x[None]
    elif x.ndim != len(shape) + 1 or x.shape[1:] != shape or not len(x):
        raise InputError(f"input has shape {x.shape}, expected {shape} or (N, {shape})")
    lo, hi = t.format.qmin, t.format.qmax
    if x.size and (x.min() < lo or x.max() > hi):
        raise InputError(f"input integers in [{x.min()}, {x.max()}] lie outside the input"
                         f" format's range [{lo}, {hi}]")
    return x, single


def simulate(compiled: Compiled, x_int: np.ndarray, *, check_races: bool = True,
             method: Method = "auto") -> FunctionalResult:
    """Run a compiled model on `x_int`: integers in the input format, one sample of the input
    shape or a batch (N, *shape) — a batch runs in one pass over the program. The program was
    decoded, and its config hash and DDR image checked, once, when `compiled` was built.
    `method` forces one exact product method of the CONV CALCs (`quant.gemm`; tests), 'auto'
    takes the fastest here."""
    return _simulate(compiled.program.instructions, compiled.ddr_image, compiled.manifest,
                     compiled.config, x_int, check_races, method)


def simulate_program(program: bytes | Program, ddr_image: bytes, manifest: Manifest,
                     cfg: AcceleratorConfig, x_int: np.ndarray, *, check_races: bool = True,
                     method: Method = "auto") -> FunctionalResult:
    """`simulate` on loose parts (a program file's bytes or a decoded Program, a DDR image, a
    manifest) that were never checked against each other as a `Compiled` is: hand-made or
    damaged programs in tests and tools."""
    if isinstance(program, bytes | bytearray):
        program = decode_program(bytes(program), cfg.hash())
    elif program.config_hash != cfg.hash():
        raise InputError("program was compiled for a different accelerator configuration"
                         " (config hash mismatch)")
    _check_image(ddr_image, manifest, cfg)
    return _simulate(program.instructions, ddr_image, manifest, cfg, x_int, check_races, method)


def _simulate(ins: Sequence[Instruction], ddr_image: bytes, manifest: Manifest,
              cfg: AcceleratorConfig, x_int: np.ndarray, check_races: bool, method: Method
              ) -> FunctionalResult:
    x, single = check_input(manifest, x_int)
    res = _run(ins, ddr_image, manifest, cfg, x, check_races, method)
    if not single:
        return res
    return FunctionalResult({k: v[0] for k, v in res.outputs.items()},
                            {k: v[0] for k, v in res.layers.items()}, res.saturations,
                            res.executed, res.stats)


def _run(ins: Sequence[Instruction], ddr_image: bytes, manifest: Manifest,
         cfg: AcceleratorConfig, x: np.ndarray, check_races: bool, method: Method
         ) -> FunctionalResult:
    n = len(x)
    m = Machine(cfg, DdrMap.of(manifest), np.frombuffer(ddr_image, dtype=np.uint8), n,
                check_races, method)
    tensors = manifest.tensors
    x = x.astype(np.int64)
    host: dict[str, np.ndarray] = {manifest.input: x}
    for address, values in manifest.host_writes(manifest.input, x):   # as the program wants
        m.host_write(address, values)
    stage_end = {d.instructions[1] - 1: d for d in manifest.layers
                 if d.instructions[1] > d.instructions[0]}
    layers: dict[str, np.ndarray] = {}
    sats_by_name: dict[str, int] = {}
    executed = 0

    def from_ddr(name: str) -> np.ndarray:
        t = tensors[name]
        return m.host_read(t.address, int(np.prod(t.shape))).reshape(n, *t.shape)

    for step in manifest.schedule:
        if isinstance(step, AccelStep):
            a, b = step.instructions
            if b > len(ins) or not isinstance(ins[b - 1], End):
                raise InputError(f"manifest segment {step.segment}: instructions [{a}, {b})"
                                 " do not end with END")
            for k in range(a, b):
                if isinstance(ins[k], End) and k != b - 1:
                    raise SimulationError(k, ins[k], "END inside a segment")
                m.step(k, ins[k])
                executed += 1
                d = stage_end.get(k)
                if d is not None:
                    m.flush()
                    layers[d.output] = from_ddr(d.output)
        else:
            y, nsat = host_step(step, tensors, host, from_ddr, n)
            sats_by_name[step.layer] = nsat
            layers[step.output] = y
            host[step.output] = y
            for address, values in manifest.host_writes(step.output, np.asarray(y)):
                m.host_write(address, values)
    if executed != len(ins):
        raise InputError(f"the manifest's schedule covers {executed} of {len(ins)} instructions")
    for d in manifest.layers:
        sats_by_name[d.name] = m.saturations.get(d.index, 0)
    outputs = {}
    for name, t in manifest.outputs:
        outputs[name] = layers[t] if t in layers else host[t] if t in host else from_ddr(t)
    return FunctionalResult(outputs, layers, sats_by_name, executed, {"sync_nops": m.nops})

