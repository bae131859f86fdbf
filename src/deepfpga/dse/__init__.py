"""Design-space exploration (`deepfpga dse`, docs/dse.md): which accelerator to build for a
network on a chip.

space (what varies) → build (a config per point, fit-checked by the resource model with a shell
margin) → evaluate (compile + timing simulator, the only part on workers) → search (exhaustive
or NSGA-II, deterministic for a seed) → pareto (the front) → store (points.jsonl, written as it
goes, for --resume) → explore (the sweep) → flow (the command as a function) → summary (the
files, the page from deepfpga.report.dse).
"""
