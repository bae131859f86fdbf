"""deepfpga: a trained CNN onto an embedded-FPGA accelerator (Qiu et al., FPGA 2016)."""

__version__ = "0.1.0"
