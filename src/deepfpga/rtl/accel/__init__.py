"""RTL of the whole accelerator (Amaranth HDL 0.5): controller, DMA engines, buffers and PEs
behind an AXI4 master and an AXI4-Lite slave. `spec` is the contract shared with the harness."""
