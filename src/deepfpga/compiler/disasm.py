"""Disassembler: a program as one readable line per instruction, grouped by layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deepfpga.hw.isa import Buffer, Calc, CalcKind, End, Instruction, Load, Program, Save

if TYPE_CHECKING:
    from deepfpga.compiler.artifact import Manifest, StageEntry

_FLAG_NAMES = ("pop_prev", "pop_next", "push_prev", "push_next")
# How the flags read per engine (the channel each one uses).
_FLAG_TEXT = {
    Load: {"pop_next": "wait C→L", "push_next": "give L→C"},
    Calc: {"pop_prev": "wait L→C", "pop_next": "wait S→C", "push_prev": "give C→L",
           "push_next": "give C→S"},
    Save: {"pop_prev": "wait C→S", "push_prev": "give S→C"},
}


def _flags(ins: Instruction) -> str:
    names = _FLAG_TEXT.get(type(ins), {})
    out = [names.get(f, f) for f in _FLAG_NAMES if getattr(ins, f)]
    return f"  [{', '.join(out)}]" if out else ""


def _dma(ins: Load | Save) -> str:
    s = f"ddr=0x{ins.ddr_addr:08x} len={ins.length}"
    if ins.n1 > 1 or ins.n2 > 1:
        s += f" ×{ins.n1}/{ins.stride1}B"
    if ins.n2 > 1:
        s += f" ×{ins.n2}/{ins.stride2}B"
    return s


def format_instruction(ins: Instruction) -> str:
    """The text of one instruction (no index)."""
    if isinstance(ins, Load):
        buf = Buffer(ins.buffer).name if ins.buffer in Buffer._value2member_map_ else \
            str(ins.buffer)
        fc = " fc" if ins.fc_weights else ""
        p4 = " p4" if ins.packed4 else ""    # two 4-bit weights per DDR byte
        return f"LOAD  {buf:<6}{fc}{p4} @{ins.buf_addr} ← {_dma(ins)}{_flags(ins)}"
    if isinstance(ins, Save):
        return f"SAVE  @{ins.ob_addr} → {_dma(ins)}{_flags(ins)}"
    if isinstance(ins, End):
        return "END"
    assert isinstance(ins, Calc)
    if ins.to == 0 or ins.ti == 0:
        return f"CALC  nop{_flags(ins)}"
    kind = CalcKind(ins.kind).name if ins.kind in CalcKind._value2member_map_ else str(ins.kind)
    s = f"CALC  {kind:<4} ti={ins.ti} to={ins.to} in@{ins.ib_addr} w@{ins.wb_addr}"
    if ins.kind in (CalcKind.CONV, CalcKind.CONV1):
        s += (f" {ins.in_rows}x{ins.in_cols}→{ins.out_rows}x{ins.out_cols} s{ins.stride}"
              f" pad={ins.pad_top},{ins.pad_left}")
        if ins.koff_y or ins.koff_x:
            s += f" koff={ins.koff_y},{ins.koff_x}"
    s += f" acc@{ins.ob_addr}" + ("+=" if ins.accumulate else "=")
    if ins.finalize:
        parts = []
        if ins.has_bias:
            parts.append(f"bias@{ins.bb_addr}<<{ins.bias_shift}")
        if ins.relu:
            parts.append("relu")
        parts.append(f"shift {ins.data_shift} sat{ins.out_bits}")
        if ins.pool:
            parts.append("pool")
        pitch = f" pitch {ins.out_pitch}" if ins.out_pitch else ""
        s += f" | {' '.join(parts)} → @{ins.out_addr}{pitch}"
    return s + _flags(ins)


def instruction_dict(ins: Instruction) -> dict[str, Any]:
    d: dict[str, Any] = {"op": ins.OPCODE.name}
    for name, _, _ in ins.all_fields():
        if name != "opcode":
            d[name] = getattr(ins, name)
    return d


def _layer_names(manifest: Manifest | None) -> dict[int, StageEntry]:
    if manifest is None:
        return {}
    return {d.index: d for d in manifest.layers}


def listing(program: Program | Sequence[Instruction], manifest: Manifest | None = None) -> str:
    """The program as text: a header per layer (name, fused layers, tiling), then one numbered
    line per instruction."""
    ins = program.instructions if isinstance(program, Program) else tuple(program)
    layers = _layer_names(manifest)
    width = len(str(max(len(ins) - 1, 0)))
    lines: list[str] = []
    current: int | None = None
    for k, i in enumerate(ins):
        if not isinstance(i, End) and i.layer != current:
            current = i.layer
            d = layers.get(current)
            if d is None:
                lines.append(f"; layer {current}")
            else:
                t = d.tiling
                lines.append(f"; layer {current}: {d.name} ({'+'.join(d.fused)})"
                             f" tiling tr={t.tr} tc={t.tc} ti={t.ti}"
                             f" to={t.to} {t.order} group={t.group}")
        lines.append(f"{k:>{width}}  {format_instruction(i)}")
    return "\n".join(lines)


def listing_json(program: Program | Sequence[Instruction],
                 manifest: Manifest | None = None) -> list[dict[str, Any]]:
    ins = program.instructions if isinstance(program, Program) else tuple(program)
    layers = _layer_names(manifest)
    out = []
    for k, i in enumerate(ins):
        d = {"index": k, **instruction_dict(i)}
        if not isinstance(i, End) and i.layer in layers:
            d["layer_name"] = layers[i.layer].name
        d["text"] = format_instruction(i)
        out.append(d)
    return out
