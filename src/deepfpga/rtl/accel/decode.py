"""CALC instruction fields out of the raw 256-bit word (offsets from `spec.field_offsets`), and
the setup arithmetic every CALC needs before it runs: the sizes of its operands and results
(one shared multiplier, one product per cycle) and the checks in the functional simulator's
order, so the first failing check names the same error.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, Value, signed

from deepfpga.hw.isa import CalcKind, Opcode
from deepfpga.rtl.accel.buffers import BufferGeometry
from deepfpga.rtl.accel.fields import field
from deepfpga.rtl.accel.spec import ErrorCode, field_offsets


def calc_fields(word: Value) -> dict[str, Value]:
    """name -> the field's bits of `word` (signed fields as signed values)."""
    return {name: field(word, Opcode.CALC, name) for name in field_offsets(Opcode.CALC)}


class Setup:
    """Registered sizes of one CALC, computed over `STEPS` cycles by one 14×26-bit multiplier.

    rc_in = in_rows·in_cols (INPUT entries per channel), tile_n = ti·rc_in, ti9 = the terms
    of one output (CONV: 9·ti; CONV1, a 1×1 kernel: ti), w_n = to·ti9, rc = out_rows·out_cols,
    acc_n = to·rc, npc = finalized values per channel, pitch, out_span = (to−1)·pitch,
    fc_n = to·ti, yoff0 = (koff_y−pad_top)·in_cols, ystep = stride·in_cols,
    grp_skip = (group − 1)·rc (the output-channel-parallel MAC's step from the last pixel of a
    channel group to the first of the next).
    """

    STEPS = 11

    def __init__(self, m: Module, f: dict[str, Value], step: Value, active: Value,
                 group: int = 1):
        self.rc_in = Signal(24)
        self.tile_n = Signal(36)
        self.ti9 = Signal(16)
        self.w_n = Signal(28)
        self.rc = Signal(24)
        self.acc_n = Signal(36)
        self.npc = Signal(24)
        self.pitch = Signal(24)
        self.out_span = Signal(36)
        self.fc_n = Signal(24)
        self.yoff0 = Signal(signed(20))
        self.ystep = Signal(15)
        self.grp_skip = Signal(36)
        self.y0 = Signal(signed(6))     # koff_y − pad_top
        self.x0 = Signal(signed(6))     # koff_x − pad_left
        rp = Mux(f["pool"], f["out_rows"] >> 1, f["out_rows"])
        cp = Mux(f["pool"], f["out_cols"] >> 1, f["out_cols"])
        m.d.comb += [self.y0.eq(f["koff_y"] - f["pad_top"]),
                     self.x0.eq(f["koff_x"] - f["pad_left"]),
                     self.ti9.eq(Mux(f["kind"] == CalcKind.CONV1, f["ti"],
                                     (f["ti"] << 3) + f["ti"])),
                     self.pitch.eq(Mux(f["out_pitch"] != 0, f["out_pitch"], self.npc))]
        steps = [
            (self.rc_in, f["in_rows"], f["in_cols"]),
            (self.tile_n, f["ti"], self.rc_in),
            (self.w_n, f["to"], self.ti9),
            (self.rc, f["out_rows"], f["out_cols"]),
            (self.acc_n, f["to"], self.rc),
            (self.npc, rp, cp),
            (self.out_span, f["to"] - 1, self.pitch),
            (self.fc_n, f["to"], f["ti"]),
            (self.yoff0, self.y0, f["in_cols"]),
            (self.ystep, f["stride"], f["in_cols"]),
            (self.grp_skip, group - 1, self.rc),
        ]
        assert len(steps) == self.STEPS
        mul_a = Signal(signed(14))
        mul_b = Signal(signed(26))
        prod = mul_a * mul_b
        with m.If(active), m.Switch(step):
            for k, (dest, a, b) in enumerate(steps):
                with m.Case(k):
                    m.d.comb += [mul_a.eq(a), mul_b.eq(b)]
                    m.d.sync += dest.eq(prod)

    def error(self, f: dict[str, Value], geo: BufferGeometry, max_row_width: int,
              data_bits: int, pool_width: int) -> Value:
        """The ErrorCode of the first failing check, in the functional simulator's order (0: ok).
        `pool_width` is the widest accumulator row the max-pool's line buffer holds."""
        fc = f["kind"] == CalcKind.FC
        fin = f["finalize"]
        checks = [
            (f["kind"] > max(CalcKind), ErrorCode.BAD_FIELD),
            (f["stride"] == 0, ErrorCode.BAD_FIELD),
            (fc & (f["pool"] | (f["in_rows"] != 1) | (f["in_cols"] != 1)
                   | (f["out_rows"] != 1) | (f["out_cols"] != 1)), ErrorCode.BAD_FIELD),
            (fc & (f["wb_addr"] + f["ti"] > geo.weight_entries), ErrorCode.CALC_RANGE),
            (fc & (f["ib_addr"] + self.fc_n > geo.fc_entries), ErrorCode.CALC_RANGE),
            (~fc & (f["in_cols"] > max_row_width), ErrorCode.BAD_FIELD),
            (~fc & (f["ib_addr"] + self.tile_n > geo.input_entries), ErrorCode.CALC_RANGE),
            (~fc & (f["wb_addr"] + self.w_n > geo.weight_entries), ErrorCode.CALC_RANGE),
            (f["ob_addr"] + self.acc_n > geo.output_entries, ErrorCode.CALC_RANGE),
            (fin & ((f["out_bits"] < 2) | (f["out_bits"] > data_bits)), ErrorCode.BAD_FIELD),
            (fin & f["has_bias"] & (f["bb_addr"] + f["to"] > geo.bias_entries),
             ErrorCode.CALC_RANGE),
            (fin & (self.npc != 0)
             & (f["out_addr"] + self.out_span + self.npc > geo.output_entries),
             ErrorCode.CALC_RANGE),
            # a hardware limit the compiler respects (the pool's line buffer)
            (fin & f["pool"] & (f["out_cols"] > pool_width), ErrorCode.BAD_FIELD),
        ]
        code: Value = Const(0, 8)
        for cond, err in reversed(checks):
            code = Mux(cond, int(err), code)
        return code
