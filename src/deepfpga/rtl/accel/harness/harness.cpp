// deepfpga co-simulation harness: the Verilated accelerator (class Vaccel, top deepfpga_accel),
// the behavioural AXI4 DDR slave of ddr.h, an AXI4-Lite master to the register map and a
// per-instruction trace from the tr_* ports. Built into a shared library with a C API that
// Python drives through ctypes (deepfpga.rtl.accel.verilator): whole runs happen here, never
// one Python call per cycle.
//
// Cycle protocol: set every input (slave outputs are registered state), evaluate with clk low
// so the DUT's combinational outputs settle, sample its outputs (handshakes, trace, irq), then
// raise clk and evaluate (the DUT's registers take the inputs). Harness cycle n is the n-th
// rising edge since the library was created.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "Vaccel.h"
#include "ddr.h"
#include "verilated.h"

#ifndef DFH_BEAT_BYTES
#error "DFH_BEAT_BYTES (AXI data width / 8) must be defined"
#endif

namespace {

template <typename T>
inline void put_bytes(T& port, const uint8_t* b, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n && i < 8; i++) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    port = static_cast<T>(v);
}
template <std::size_t N>
inline void put_bytes(VlWide<N>& port, const uint8_t* b, int n) {
    for (std::size_t w = 0; w < N; w++) {
        uint32_t v = 0;
        for (int j = 0; j < 4; j++) {
            int k = static_cast<int>(4 * w) + j;
            if (k < n) v |= static_cast<uint32_t>(b[k]) << (8 * j);
        }
        port[w] = v;
    }
}
template <typename T>
inline void get_bytes(const T& port, uint8_t* b, int n) {
    uint64_t v = static_cast<uint64_t>(port);
    for (int i = 0; i < n && i < 8; i++) b[i] = static_cast<uint8_t>(v >> (8 * i));
}
template <std::size_t N>
inline void get_bytes(const VlWide<N>& port, uint8_t* b, int n) {
    for (int k = 0; k < n; k++) b[k] = static_cast<uint8_t>(port.m_storage[k / 4] >> (8 * (k % 4)));
}

enum Engine { LOAD = 0, CALC = 1, SAVE = 2 };

struct Trace {
    std::vector<int64_t> start, end, sat, engine;
    int64_t open[3] = {-1, -1, -1};
    uint64_t dropped = 0;      // events whose index was beyond the trace
    void reset(uint32_t n) {
        start.assign(n, -1);
        end.assign(n, -1);
        sat.assign(n, 0);
        engine.assign(n, -1);
        for (auto& o : open) o = -1;
        dropped = 0;
    }
    bool ok(int64_t i) {
        if (i >= 0 && static_cast<uint64_t>(i) < start.size()) return true;
        dropped++;
        return false;
    }
    void on_start(int e, int64_t i, int64_t c) {
        if (!ok(i)) return;
        start[i] = c;
        engine[i] = e;
        open[e] = i;
    }
    void on_end(int e, int64_t i, int64_t c, int64_t s) {
        if (!ok(i)) return;
        end[i] = c;
        if (engine[i] < 0) engine[i] = e;
        sat[i] += s;
        if (open[e] == i) open[e] = -1;
    }
    // One engine's pulses of a cycle. With a single index port, a start and an end in the same
    // cycle are the end of the open instruction and the start of `i` when they differ, else a
    // one-cycle instruction.
    void engine_cycle(int e, bool st, bool en, int64_t i, int64_t c, int64_t s) {
        if (st && en) {
            if (open[e] >= 0 && open[e] != i) {
                on_end(e, open[e], c, s);
                on_start(e, i, c);
            } else {
                on_start(e, i, c);
                on_end(e, i, c, s);
            }
        } else if (st) {
            on_start(e, i, c);
        } else if (en) {
            on_end(e, i, c, s);
        }
    }
};

// A DDR range copied when an instruction's end is traced (a stage's last SAVE: the stage's
// output is complete there and no later SAVE has overwritten any of it yet).
struct Watch {
    int64_t index;
    uint64_t addr, len;
    bool taken = false;
    std::vector<uint8_t> data;
};

struct Harness {
    VerilatedContext ctx;
    Vaccel* top = nullptr;
    dfh::Ddr ddr;
    Trace trace;
    int64_t cycle = 0;
    int64_t run_start = 0, run_cycles = 0;
    bool irq = false;
    bool hs_aw = false, hs_w = false, hs_b = false, hs_ar = false, hs_r = false;
    uint32_t lite_rdata = 0;
    std::string error;
    dfh::MasterOut m;
    std::vector<Watch> watches;
    size_t watches_left = 0;

    Harness(uint64_t bytes, int64_t overhead, double rate, bool log)
        : ddr(bytes, DFH_BEAT_BYTES, overhead, rate, log) {
        top = new Vaccel(&ctx, "accel");
        top->clk = 0;
        top->rst = 1;
        idle_lite();
        for (int i = 0; i < 4; i++) tick();
        top->rst = 0;
        ddr.reset_channels();
    }
    ~Harness() {
        top->final();
        delete top;
    }

    void idle_lite() {
        top->s_axil_awvalid = 0;
        top->s_axil_wvalid = 0;
        top->s_axil_bready = 0;
        top->s_axil_arvalid = 0;
        top->s_axil_rready = 0;
        top->s_axil_wstrb = 0xF;
    }

    // One clock cycle; returns false once the DDR model refused something.
    bool tick() {
        const dfh::SlaveOut& s = ddr.out();
        top->m_axi_arready = s.arready;
        top->m_axi_rvalid = s.rvalid;
        top->m_axi_rlast = s.rlast;
        top->m_axi_rresp = s.rresp;
        put_bytes(top->m_axi_rdata, s.rdata, DFH_BEAT_BYTES);
        top->m_axi_awready = s.awready;
        top->m_axi_wready = s.wready;
        top->m_axi_bvalid = s.bvalid;
        top->m_axi_bresp = s.bresp;
        top->clk = 0;
        top->eval();
        m.araddr = top->m_axi_araddr;
        m.arlen = top->m_axi_arlen;
        m.arsize = top->m_axi_arsize;
        m.arburst = top->m_axi_arburst;
        m.arvalid = top->m_axi_arvalid;
        m.rready = top->m_axi_rready;
        m.awaddr = top->m_axi_awaddr;
        m.awlen = top->m_axi_awlen;
        m.awsize = top->m_axi_awsize;
        m.awburst = top->m_axi_awburst;
        m.awvalid = top->m_axi_awvalid;
        get_bytes(top->m_axi_wdata, m.wdata, DFH_BEAT_BYTES);
        m.wstrb = static_cast<uint32_t>(top->m_axi_wstrb);
        m.wlast = top->m_axi_wlast;
        m.wvalid = top->m_axi_wvalid;
        m.bready = top->m_axi_bready;
        irq = top->irq;
        hs_aw = top->s_axil_awvalid && top->s_axil_awready;
        hs_w = top->s_axil_wvalid && top->s_axil_wready;
        hs_b = top->s_axil_bvalid && top->s_axil_bready;
        hs_ar = top->s_axil_arvalid && top->s_axil_arready;
        hs_r = top->s_axil_rvalid && top->s_axil_rready;
        lite_rdata = top->s_axil_rdata;
        int64_t c = cycle - run_start;
        if (top->tr_load_start | top->tr_load_end)
            trace.engine_cycle(LOAD, top->tr_load_start, top->tr_load_end, top->tr_load_index, c, 0);
        if (top->tr_calc_start | top->tr_calc_end)
            trace.engine_cycle(CALC, top->tr_calc_start, top->tr_calc_end, top->tr_calc_index, c,
                               top->tr_calc_end ? top->tr_calc_sat : 0);
        if (top->tr_save_start | top->tr_save_end)
            trace.engine_cycle(SAVE, top->tr_save_start, top->tr_save_end, top->tr_save_index, c, 0);
        if (watches_left) take_watches();
        ddr.step(m, cycle);
        top->clk = 1;
        top->eval();
        cycle++;
        return !ddr.failed();
    }

    void take_watches() {
        for (Watch& w : watches) {
            if (w.taken || w.index < 0 || static_cast<uint64_t>(w.index) >= trace.end.size() ||
                trace.end[w.index] < 0)
                continue;
            auto& mem = ddr.mem();
            w.data.assign(mem.begin() + w.addr, mem.begin() + w.addr + w.len);
            w.taken = true;
            watches_left--;
        }
    }

    // AXI4-Lite write; returns 0, or -1 (DDR refused something) / -2 (no response).
    int lite_write(uint32_t addr, uint32_t data) {
        top->s_axil_awaddr = addr;
        top->s_axil_awvalid = 1;
        top->s_axil_wdata = data;
        top->s_axil_wstrb = 0xF;
        top->s_axil_wvalid = 1;
        top->s_axil_bready = 1;
        bool aw = false, w = false, b = false;
        for (int k = 0; k < 1000 && !b; k++) {
            if (!tick()) return -1;
            aw |= hs_aw;
            w |= hs_w;
            b = hs_b && aw && w;
            if (aw) top->s_axil_awvalid = 0;
            if (w) top->s_axil_wvalid = 0;
        }
        idle_lite();
        if (!b) error = "AXI-Lite write to register " + std::to_string(addr) + ": no response";
        return b ? 0 : -2;
    }

    int lite_read(uint32_t addr, uint32_t* data) {
        top->s_axil_araddr = addr;
        top->s_axil_arvalid = 1;
        top->s_axil_rready = 1;
        bool ar = false, r = false;
        for (int k = 0; k < 1000 && !r; k++) {
            if (!tick()) return -1;
            ar |= hs_ar;
            r = hs_r && ar;
            if (r) *data = lite_rdata;
            if (ar) top->s_axil_arvalid = 0;
        }
        idle_lite();
        if (!r) error = "AXI-Lite read of register " + std::to_string(addr) + ": no response";
        return r ? 0 : -2;
    }
};

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* dfh_create(uint64_t ddr_bytes, int64_t overhead,
                                                        double bytes_per_cycle, int log_txns) {
    return new Harness(ddr_bytes, overhead, bytes_per_cycle, log_txns != 0);
}

__attribute__((visibility("default"))) void dfh_destroy(void* h) {
    delete static_cast<Harness*>(h);
}

__attribute__((visibility("default"))) int dfh_beat_bytes() { return DFH_BEAT_BYTES; }

__attribute__((visibility("default"))) uint64_t dfh_ddr_size(void* h) {
    return static_cast<Harness*>(h)->ddr.mem().size();
}

__attribute__((visibility("default"))) int dfh_ddr_write(void* h, uint64_t addr,
                                                         const uint8_t* p, uint64_t n) {
    auto& mem = static_cast<Harness*>(h)->ddr.mem();
    if (addr > mem.size() || n > mem.size() - addr) return -1;
    std::memcpy(mem.data() + addr, p, n);
    return 0;
}

__attribute__((visibility("default"))) int dfh_ddr_read(void* h, uint64_t addr, uint8_t* p,
                                                        uint64_t n) {
    auto& mem = static_cast<Harness*>(h)->ddr.mem();
    if (addr > mem.size() || n > mem.size() - addr) return -1;
    std::memcpy(p, mem.data() + addr, n);
    return 0;
}

__attribute__((visibility("default"))) int dfh_reg_write(void* h, uint32_t addr, uint32_t v) {
    return static_cast<Harness*>(h)->lite_write(addr, v);
}

__attribute__((visibility("default"))) int dfh_reg_read(void* h, uint32_t addr, uint32_t* v) {
    return static_cast<Harness*>(h)->lite_read(addr, v);
}

// Write CTRL = START and run until irq (DONE or ERROR) or `max_cycles`. The trace covers
// instruction indices 0..trace_n-1 (from PROG_ADDR); cycles (trace and run) count from the
// first cycle of the START register write. Returns 0 irq, 1 cycle limit, -1 the DDR model
// refused a transaction, -2 the register write got no response.
__attribute__((visibility("default"))) int dfh_run(void* h, uint32_t ctrl_addr,
                                                   uint64_t max_cycles, uint32_t trace_n) {
    Harness* x = static_cast<Harness*>(h);
    x->trace.reset(trace_n);
    x->run_start = x->cycle;
    for (Watch& w : x->watches) w.taken = false;
    x->watches_left = x->watches.size();
    int rc = x->lite_write(ctrl_addr, 1);
    int64_t t0 = x->run_start;
    if (rc) return rc;
    int64_t limit = t0 + static_cast<int64_t>(max_cycles);
    while (true) {
        if (!x->tick()) {
            x->run_cycles = x->cycle - t0;
            return -1;
        }
        if (x->irq) break;
        if (x->cycle >= limit) {
            x->run_cycles = x->cycle - t0;
            return 1;
        }
    }
    x->run_cycles = x->cycle - t0;
    return 0;
}

// Copy DDR [addr, addr + len) when instruction `index` (from PROG_ADDR) ends in the next runs;
// returns the watch's id, or -1 for a range outside the DDR array.
__attribute__((visibility("default"))) int64_t dfh_watch(void* h, int64_t index, uint64_t addr,
                                                         uint64_t len) {
    Harness* x = static_cast<Harness*>(h);
    if (addr > x->ddr.mem().size() || len > x->ddr.mem().size() - addr) return -1;
    Watch w;
    w.index = index;
    w.addr = addr;
    w.len = len;
    x->watches.push_back(w);
    return static_cast<int64_t>(x->watches.size()) - 1;
}

__attribute__((visibility("default"))) void dfh_watch_clear(void* h) {
    static_cast<Harness*>(h)->watches.clear();
}

// The bytes watch `id` took in the last run: 0, or -1 if its instruction never ended.
__attribute__((visibility("default"))) int dfh_watch_get(void* h, int64_t id, uint8_t* out) {
    Harness* x = static_cast<Harness*>(h);
    if (id < 0 || static_cast<size_t>(id) >= x->watches.size()) return -1;
    Watch& w = x->watches[id];
    if (!w.taken) return -1;
    std::memcpy(out, w.data.data(), w.len);
    return 0;
}

// Just clock for `n` cycles (tests of idle behaviour); returns -1 if the DDR model refused.
__attribute__((visibility("default"))) int dfh_idle(void* h, uint64_t n) {
    Harness* x = static_cast<Harness*>(h);
    for (uint64_t k = 0; k < n; k++)
        if (!x->tick()) return -1;
    return 0;
}

__attribute__((visibility("default"))) int64_t dfh_cycle(void* h) {
    return static_cast<Harness*>(h)->cycle;
}

__attribute__((visibility("default"))) int64_t dfh_run_cycles(void* h) {
    return static_cast<Harness*>(h)->run_cycles;
}

__attribute__((visibility("default"))) int64_t dfh_run_start(void* h) {
    return static_cast<Harness*>(h)->run_start;
}

__attribute__((visibility("default"))) int dfh_irq(void* h) {
    return static_cast<Harness*>(h)->irq;
}

// The first error (DDR protocol or register access), or "".
__attribute__((visibility("default"))) const char* dfh_error(void* h) {
    Harness* x = static_cast<Harness*>(h);
    return x->ddr.failed() ? x->ddr.error().c_str() : x->error.c_str();
}

__attribute__((visibility("default"))) uint64_t dfh_note_count(void* h) {
    return static_cast<Harness*>(h)->ddr.notes().size();
}

__attribute__((visibility("default"))) const char* dfh_note(void* h, uint64_t k) {
    auto& n = static_cast<Harness*>(h)->ddr.notes();
    return k < n.size() ? n[k].c_str() : "";
}

// Trace of the last run, per instruction index: start cycle, end cycle (-1: none), values the
// CALC saturated, engine (0 LOAD, 1 CALC, 2 SAVE, -1 none). Returns events dropped (index out
// of range).
__attribute__((visibility("default"))) uint64_t dfh_trace(void* h, int64_t* start, int64_t* end,
                                                          int64_t* sat, int64_t* engine,
                                                          uint64_t n) {
    Trace& t = static_cast<Harness*>(h)->trace;
    uint64_t k = n < t.start.size() ? n : t.start.size();
    std::memcpy(start, t.start.data(), k * sizeof(int64_t));
    std::memcpy(end, t.end.data(), k * sizeof(int64_t));
    std::memcpy(sat, t.sat.data(), k * sizeof(int64_t));
    std::memcpy(engine, t.engine.data(), k * sizeof(int64_t));
    return t.dropped;
}

// Counters since creation: read bursts, write bursts, read beats, write beats, read bytes,
// write bytes, DECERR bursts.
__attribute__((visibility("default"))) void dfh_stats(void* h, uint64_t* out) {
    Harness* x = static_cast<Harness*>(h);
    for (int k = 0; k < dfh::Ddr::NSTATS; k++) out[k] = x->ddr.stat(k);
}

__attribute__((visibility("default"))) uint64_t dfh_txn_count(void* h) {
    return static_cast<Harness*>(h)->ddr.log().size();
}

// The burst log from entry `first`: 6 values each (write, addr, beats, accepted, first beat,
// last beat cycle).
__attribute__((visibility("default"))) uint64_t dfh_txns(void* h, uint64_t first, int64_t* out,
                                                         uint64_t n) {
    auto& log = static_cast<Harness*>(h)->ddr.log();
    uint64_t k = 0;
    for (; k < n && first + k < log.size(); k++) {
        const dfh::Txn& t = log[first + k];
        int64_t* o = out + 6 * k;
        o[0] = t.write; o[1] = t.addr; o[2] = t.beats;
        o[3] = t.accepted; o[4] = t.first; o[5] = t.last;
    }
    return k;
}

}  // extern "C"
