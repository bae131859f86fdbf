"""Fixed-point quantization: formats, the reference executor, the quantized model and the flow."""
