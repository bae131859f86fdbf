"""Simulators of the accelerator: `functional` (bit-exact values) and `timing` (cycles)."""
