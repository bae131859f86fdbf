"""Quantized models in and out: QONNX (`Quant` nodes) and standard QDQ ONNX
(`QuantizeLinear`/`DequantizeLinear`).

- `deepfpga.interchange.onnx_quant.load_quantized_onnx`: a quantized ONNX file (power-of-two
  scales, zero points 0) → `QuantizedModel` with the formats the file states;
- `deepfpga.interchange.export.export_onnx`: a `QuantizedModel` → QDQ or QONNX bytes.

docs/interchange.md says what maps to what and what is refused.
"""
