// Behavioural AXI4 DDR slave for the deepfpga co-simulation harness.
//
// A byte array behind independent read and write channels. Each channel serves its bursts one
// at a time, in order: a burst accepted at cycle c starts service at max(c + 1, end of the
// previous burst on that channel) and presents/accepts its first beat `overhead` cycles later
// (the per-transaction latency). Beats then move at most one per cycle per channel and only
// while a token bucket shared by both channels (DDR is one device) holds a full beat: it gains
// `rate` bytes per cycle, holds at most max(rate, beat bytes), and each beat costs its full
// width; reads go first unless a write beat is waiting, then the two alternate. Bursts that are not INCR, not full width, longer than 256 beats or crossing a 4 KiB
// boundary, and handshake violations (valid dropped or payload changed before ready, WLAST on
// the wrong beat) stop the run with the transaction described. Addresses outside the array
// answer DECERR (the accelerator must flag AXI_ERROR) and are noted, not fatal.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace dfh {

constexpr int kMaxBeatBytes = 32;     // AXI data width up to 256 bits
constexpr int kMaxOutstanding = 8;    // accepted bursts waiting per channel
constexpr int64_t kScale = 1000000;   // token units per byte (integer bucket arithmetic)

// What the master drives, sampled once per cycle (before the rising edge).
struct MasterOut {
    uint32_t araddr = 0;
    uint32_t arlen = 0, arsize = 0, arburst = 0;
    bool arvalid = false, rready = false;
    uint32_t awaddr = 0;
    uint32_t awlen = 0, awsize = 0, awburst = 0;
    bool awvalid = false;
    uint8_t wdata[kMaxBeatBytes] = {};
    uint32_t wstrb = 0;
    bool wlast = false, wvalid = false, bready = false;
};

// What the slave drives during a cycle (registered: a function of its state only).
struct SlaveOut {
    bool arready = false, rvalid = false, rlast = false;
    uint32_t rresp = 0;
    uint8_t rdata[kMaxBeatBytes] = {};
    bool awready = false, wready = false, bvalid = false;
    uint32_t bresp = 0;
};

// One burst, for the transaction log: cycles are harness cycles.
struct Txn {
    int64_t write = 0, addr = 0, beats = 0, accepted = -1, first = -1, last = -1;
};

struct Burst {
    uint32_t addr = 0;       // aligned address of beat 0
    uint32_t start = 0;      // the address as given (may be unaligned)
    int beats = 0;
    int done = 0;            // beats moved
    int64_t ready_at = 0;    // first cycle a beat may move
    bool decerr = false;
    size_t log = SIZE_MAX;   // index in the transaction log
    int64_t accepted = 0;
};

class Ddr {
  public:
    Ddr(uint64_t bytes, int beat_bytes, int64_t overhead, double bytes_per_cycle, bool log_txns)
        : mem_(bytes, 0), beat_(beat_bytes), overhead_(overhead),
          rate_(static_cast<int64_t>(bytes_per_cycle * kScale + 0.5)), log_on_(log_txns) {
        cap_ = rate_ > beat_ * kScale ? rate_ : beat_ * kScale;
        tokens_ = cap_;
        size_log2_ = 0;
        while ((1 << size_log2_) < beat_) size_log2_++;
    }

    std::vector<uint8_t>& mem() { return mem_; }
    const std::string& error() const { return error_; }
    bool failed() const { return !error_.empty(); }
    const std::vector<Txn>& log() const { return log_; }
    const std::vector<std::string>& notes() const { return notes_; }
    uint64_t stat(int k) const { return stats_[k]; }
    enum { RD_TXNS, WR_TXNS, RD_BEATS, WR_BEATS, RD_BYTES, WR_BYTES, DECERRS, NSTATS };

    // Outputs for the coming cycle.
    const SlaveOut& out() const { return out_; }

    // The cycle's handshakes given what the master drove; then prepare the next cycle's outputs.
    void step(const MasterOut& m, int64_t cycle) {
        check_stable(m, cycle);
        if (failed()) return;
        if (out_.arready && m.arvalid) accept(false, m.araddr, m.arlen, m.arsize, m.arburst, cycle);
        if (out_.awready && m.awvalid) accept(true, m.awaddr, m.awlen, m.awsize, m.awburst, cycle);
        if (failed()) return;
        if (out_.rvalid && m.rready) read_beat_done(cycle);
        if (out_.wready && m.wvalid) write_beat(m, cycle);
        if (out_.bvalid && m.bready) bresp_.pop_front();
        if (failed()) return;
        prev_ = m;
        prepare(cycle + 1);
    }

    void reset_channels() {
        rq_.clear(); wq_.clear(); bresp_.clear();
        r_end_ = w_end_ = 0;
        beat_up_ = false;
        tokens_ = cap_;
        out_ = SlaveOut();
        prev_ = MasterOut();
        out_.arready = out_.awready = true;
    }

  private:
    void fail(const std::string& s) {
        if (error_.empty()) error_ = s;
    }

    std::string describe(bool write, uint32_t addr, uint32_t len, uint32_t size, uint32_t burst,
                         int64_t cycle) const {
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "%s burst #%llu at cycle %lld: %saddr=0x%08x %slen=%u (%u beats) %ssize=%u"
                      " %sburst=%u",
                      write ? "write" : "read",
                      static_cast<unsigned long long>(stats_[write ? WR_TXNS : RD_TXNS]),
                      static_cast<long long>(cycle), write ? "aw" : "ar", addr,
                      write ? "aw" : "ar", len, len + 1, write ? "aw" : "ar", size,
                      write ? "aw" : "ar", burst);
        return buf;
    }

    void accept(bool write, uint32_t addr, uint32_t len, uint32_t size, uint32_t burst,
                int64_t cycle) {
        std::string what = describe(write, addr, len, size, burst, cycle);
        int beats = static_cast<int>(len) + 1;
        uint32_t aligned = addr & ~static_cast<uint32_t>(beat_ - 1);
        uint64_t last = static_cast<uint64_t>(aligned) + static_cast<uint64_t>(beats) * beat_ - 1;
        if (burst != 1) return fail(what + ": not an INCR burst (burst type must be 1)");
        if (size != static_cast<uint32_t>(size_log2_))
            return fail(what + ": not full width (size must be " + std::to_string(size_log2_) +
                        " for " + std::to_string(beat_ * 8) + "-bit beats)");
        if (beats > 256) return fail(what + ": longer than 256 beats");
        if ((aligned >> 12) != (last >> 12)) {
            char b[96];
            std::snprintf(b, sizeof b, ": crosses a 4 KiB boundary (bytes 0x%08x..0x%08llx)",
                          aligned, static_cast<unsigned long long>(last));
            return fail(what + b);
        }
        Burst t;
        t.addr = aligned;
        t.start = addr;
        t.beats = beats;
        t.accepted = cycle;
        t.decerr = last >= mem_.size();
        if (t.decerr) {
            stats_[DECERRS]++;
            if (notes_.size() < 100) notes_.push_back(what + ": outside the DDR array, DECERR");
        }
        if (log_on_) {
            t.log = log_.size();
            Txn x;
            x.write = write;
            x.addr = addr;
            x.beats = beats;
            x.accepted = cycle;
            log_.push_back(x);
        }
        stats_[write ? WR_TXNS : RD_TXNS]++;
        (write ? wq_ : rq_).push_back(t);
    }

    void check_stable(const MasterOut& m, int64_t cycle) {
        char b[160];
        if (ar_wait_ && (!m.arvalid || m.araddr != prev_.araddr || m.arlen != prev_.arlen ||
                         m.arsize != prev_.arsize || m.arburst != prev_.arburst)) {
            std::snprintf(b, sizeof b, "read address channel at cycle %lld: ARVALID dropped or"
                          " the address changed before ARREADY (AXI handshake rule)",
                          static_cast<long long>(cycle));
            return fail(b);
        }
        if (aw_wait_ && (!m.awvalid || m.awaddr != prev_.awaddr || m.awlen != prev_.awlen ||
                         m.awsize != prev_.awsize || m.awburst != prev_.awburst)) {
            std::snprintf(b, sizeof b, "write address channel at cycle %lld: AWVALID dropped or"
                          " the address changed before AWREADY (AXI handshake rule)",
                          static_cast<long long>(cycle));
            return fail(b);
        }
        if (w_wait_ && (!m.wvalid || m.wstrb != prev_.wstrb || m.wlast != prev_.wlast ||
                        std::memcmp(m.wdata, prev_.wdata, beat_) != 0)) {
            std::snprintf(b, sizeof b, "write data channel at cycle %lld: WVALID dropped or the"
                          " data changed before WREADY (AXI handshake rule)",
                          static_cast<long long>(cycle));
            return fail(b);
        }
        ar_wait_ = m.arvalid && !out_.arready;
        aw_wait_ = m.awvalid && !out_.awready;
        w_wait_ = m.wvalid && !out_.wready;
    }

    void read_beat_done(int64_t cycle) {
        Burst& t = rq_.front();
        beat_up_ = false;
        stats_[RD_BEATS]++;
        stats_[RD_BYTES] += beat_;
        if (t.log != SIZE_MAX) {
            if (t.done == 0) log_[t.log].first = cycle;
            log_[t.log].last = cycle;
        }
        t.done++;
        if (t.done == t.beats) {
            r_end_ = cycle + 1;
            rq_.pop_front();
        }
    }

    void write_beat(const MasterOut& m, int64_t cycle) {
        Burst& t = wq_.front();
        bool last = t.done + 1 == t.beats;
        char b[200];
        if (m.wlast != last) {
            std::snprintf(b, sizeof b, "write burst to 0x%08x (%d beats) at cycle %lld: WLAST %s"
                          " on beat %d", t.start, t.beats, static_cast<long long>(cycle),
                          m.wlast ? "set" : "not set", t.done);
            return fail(b);
        }
        uint32_t below = t.done == 0 ? (t.start - t.addr) : 0;   // bytes below an unaligned start
        if (below && (m.wstrb & ((1u << below) - 1))) {
            std::snprintf(b, sizeof b, "write burst to 0x%08x at cycle %lld: WSTRB 0x%x writes"
                          " below the burst's unaligned start address", t.start,
                          static_cast<long long>(cycle), m.wstrb);
            return fail(b);
        }
        if (!t.decerr) {
            uint8_t* p = mem_.data() + t.addr + static_cast<uint64_t>(t.done) * beat_;
            for (int i = 0; i < beat_; i++)
                if (m.wstrb >> i & 1) p[i] = m.wdata[i];
        }
        tokens_ -= beat_ * kScale;
        stats_[WR_BEATS]++;
        stats_[WR_BYTES] += beat_;
        if (t.log != SIZE_MAX) {
            if (t.done == 0) log_[t.log].first = cycle;
            log_[t.log].last = cycle;
        }
        t.done++;
        if (last) {
            w_end_ = cycle + 1;
            bresp_.push_back(t.decerr ? 3 : 0);
            wq_.pop_front();
        }
    }

    // Decide the outputs of cycle `c` (tokens are refilled once per cycle here).
    void prepare(int64_t c) {
        tokens_ += rate_;
        if (tokens_ > cap_) tokens_ = cap_;
        out_.arready = rq_.size() < kMaxOutstanding;
        out_.awready = wq_.size() < kMaxOutstanding;
        // service start of the head bursts
        if (!rq_.empty() && rq_.front().done == 0 && !beat_up_) {
            Burst& t = rq_.front();
            int64_t s = t.accepted + 1 > r_end_ ? t.accepted + 1 : r_end_;
            t.ready_at = s + overhead_;
        }
        if (!wq_.empty() && wq_.front().done == 0) {
            Burst& t = wq_.front();
            int64_t s = t.accepted + 1 > w_end_ ? t.accepted + 1 : w_end_;
            t.ready_at = s + overhead_;
        }
        // Reads take the tokens first, unless a write beat is already waiting (WVALID without
        // WREADY): then the channels alternate, so neither starves.
        bool rd_wants = !beat_up_ && !rq_.empty() && c >= rq_.front().ready_at;
        bool wr_wants = !wq_.empty() && c >= wq_.front().ready_at;
        bool contest = wr_wants && rd_wants && w_wait_;
        bool write_first = contest && write_turn_;
        out_.wready = false;
        if (write_first && tokens_ >= beat_ * kScale) out_.wready = true;
        if (rd_wants && tokens_ - (out_.wready ? beat_ * kScale : 0) >= beat_ * kScale) {
            Burst& t = rq_.front();
            tokens_ -= beat_ * kScale;
            beat_up_ = true;
            out_.rlast = t.done + 1 == t.beats;
            out_.rresp = t.decerr ? 3 : 0;
            if (t.decerr)
                std::memset(out_.rdata, 0, beat_);
            else
                std::memcpy(out_.rdata, mem_.data() + t.addr +
                            static_cast<uint64_t>(t.done) * beat_, beat_);
        }
        if (wr_wants && !out_.wready && tokens_ >= beat_ * kScale) out_.wready = true;
        if (contest) write_turn_ = !write_turn_;
        out_.rvalid = beat_up_;
        out_.bvalid = !bresp_.empty();
        out_.bresp = bresp_.empty() ? 0 : bresp_.front();
    }

    std::vector<uint8_t> mem_;
    int beat_;
    int size_log2_;
    int64_t overhead_;
    int64_t rate_, cap_, tokens_;
    bool log_on_;
    std::deque<Burst> rq_, wq_;
    std::deque<uint32_t> bresp_;
    int64_t r_end_ = 0, w_end_ = 0;
    bool beat_up_ = false, write_turn_ = false;
    bool ar_wait_ = false, aw_wait_ = false, w_wait_ = false;
    SlaveOut out_;
    MasterOut prev_;
    std::vector<Txn> log_;
    std::vector<std::string> notes_;
    std::string error_;
    uint64_t stats_[NSTATS] = {};
};

}  // namespace dfh
