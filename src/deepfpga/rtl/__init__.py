"""RTL of the Processing Element (Amaranth HDL 0.5): components, the PE, Verilog export,
cycle-accurate simulation against the reference, Icarus co-simulation and Yosys synthesis.

Modules are imported on use (Amaranth is not loaded by `import deepfpga.rtl`); see docs/rtl.md.
"""
