"""Check that the compiler's output is byte-identical between a git revision and the work tree.

For every zoo model on every accelerator preset, `deepfpga compile` runs once with the code of
REV (extracted with `git archive` into a temporary directory) and once with the work tree's
code, and the two `program.bin` and `ddr.bin` are compared byte for byte. ImageNet models are
compiled as architectures (zero weights); the Fashion-MNIST models are compiled both as
architectures and as quantized models with their trained weights (quantized once, by REV's
code, on 100 Fashion-MNIST training images; both revisions compile the same file).

A combination that does not compile at either revision is listed, not counted as a difference.
ImageNet models on the `tiny` preset produce 10^5-10^6 instructions: AlexNet and ZF (~250k and
~140k instructions, under a minute each) are compiled, the VGGs (minutes each) are skipped unless
`--tiny-imagenet` is given.

    python scripts/check_identical.py a6d8066            # exit 0: all identical, 1: differences
    python scripts/check_identical.py HEAD~1 --models alexnet fmnist-vgg --json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PRESETS = ("zc706-paper", "zedboard", "tiny")
IMAGENET = ("alexnet", "zf", "vgg11", "vgg13", "vgg16", "vgg19", "vgg16-svd")
FMNIST = ("fmnist-vgg", "fmnist-alex", "fmnist-resnet")
TINY_AFFORDABLE = ("alexnet", "zf")     # ImageNet models compiled for `tiny` by default
CALIB_IMAGES = 100

# Runs inside a child interpreter whose PYTHONPATH points at one revision's `src`.
_WORKER = r"""
import contextlib, io, json, sys, time
jobs = json.loads(sys.argv[1])
from deepfpga.cli import main
out = []
for job in jobs:
    if job["kind"] == "quantize":
        from deepfpga.data import load_dataset
        try:                      # where these live depends on the revision
            from deepfpga.quant.bits import bit_plan
        except ImportError:
            from deepfpga.flow import bit_plan
        try:
            from deepfpga.models import load_model
        except ImportError:
            from deepfpga.frontends import load_model
        from deepfpga.hw.config import load_config
        from deepfpga.quant.flow import quantize
        from deepfpga.quant.qfile import save_qmodel
        g = load_model(job["model"])
        hw = load_config(job["target"])
        ds = load_dataset("fashion-mnist", "train", job["images"])
        q = quantize(g, ds.x, bits=job["bits"], overrides=bit_plan(g, job["bits"], hw) or None)
        save_qmodel(job["path"], q)
        out.append({"ok": True})
        continue
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            rc = main(["compile", job["model"], "--target", job["target"], "-o", job["outdir"],
                       "--json"])
        except Exception as e:  # an internal failure is a result too
            rc, err = 1, io.StringIO(f"{type(e).__name__}: {e}")
    out.append({"rc": rc, "error": err.getvalue().strip().splitlines()[-1:] or [""],
                "seconds": time.perf_counter() - t0})
print(json.dumps(out))
"""


def _extract(rev: str, dest: Path) -> Path:
    """REV's `src` tree under `dest` (git archive: the work tree is not touched)."""
    tar = dest / "rev.tar"
    with tar.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", rev, "src"], stdout=f, check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest / "rev", filter="data")
    tar.unlink()
    return dest / "rev" / "src"


def _run(src: Path, jobs: list[dict[str, object]]) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    p = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(jobs)], env=env,
                       capture_output=True, text=True, cwd=src.parent)
    if p.returncode:
        raise SystemExit(f"worker failed under {src}:\n{p.stderr[-2000:]}")
    return json.loads(p.stdout.splitlines()[-1])


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _first_diff(a: Path, b: Path) -> str:
    x, y = a.read_bytes(), b.read_bytes()
    if len(x) != len(y):
        return f"{a.name}: {len(x)} vs {len(y)} bytes"
    k = next(i for i in range(len(x)) if x[i] != y[i])
    return f"{a.name}: first difference at byte {k}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev", help="git revision to compare against (e.g. a6d8066, HEAD~1)")
    ap.add_argument("--models", nargs="+", default=[*IMAGENET, *FMNIST])
    ap.add_argument("--targets", nargs="+", default=list(PRESETS))
    ap.add_argument("--tiny-imagenet", action="store_true",
                    help="also compile the VGGs for `tiny` (minutes per model)")
    ap.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    args = ap.parse_args(argv)

    combos, skipped = [], []
    for m in args.models:
        for t in args.targets:
            if t == "tiny" and m in IMAGENET and m not in TINY_AFFORDABLE \
                    and not args.tiny_imagenet:
                skipped.append((m, t, "VGG on tiny: minutes per compile (--tiny-imagenet)"))
                continue
            combos.append((m, t, "architecture"))
            if m in FMNIST:
                combos.append((m, t, "quantized"))

    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="check_identical_") as tmp_s:
        tmp = Path(tmp_s)
        old_src = _extract(args.rev, tmp)
        new_src = REPO / "src"
        quant_jobs, qfiles = [], {}
        for m, t, how in combos:
            if how == "quantized":
                bits = "8" if t == "zedboard" else "16"
                path = tmp / "q" / f"{m}-{t}.npz"
                path.parent.mkdir(exist_ok=True)
                qfiles[m, t] = path
                quant_jobs.append({"kind": "quantize", "model": m, "target": t, "bits": bits,
                                   "images": CALIB_IMAGES, "path": str(path)})
        if quant_jobs:
            _run(old_src, quant_jobs)
        results = {}
        for label, src in (("old", old_src), ("new", new_src)):
            jobs = [{"kind": "compile", "model": str(qfiles.get((m, t), m)) if how == "quantized"
                     else m, "target": t, "outdir": str(tmp / label / f"{m}-{t}-{how}")}
                    for m, t, how in combos]
            results[label] = _run(src, jobs)
        rows = []
        for k, (m, t, how) in enumerate(combos):
            old, new = results["old"][k], results["new"][k]
            d_old, d_new = tmp / "old" / f"{m}-{t}-{how}", tmp / "new" / f"{m}-{t}-{how}"
            row = {"model": m, "target": t, "compiled": how,
                   "seconds": [round(old["seconds"], 2), round(new["seconds"], 2)]}
            if old["rc"] or new["rc"]:
                row["status"] = "not compiled"
                row["detail"] = f"old rc {old['rc']} {old['error'][0]!r}; new rc {new['rc']}" \
                                f" {new['error'][0]!r}"
                if bool(old["rc"]) != bool(new["rc"]):
                    row["status"] = "DIFFERENT"  # one revision compiles it, the other refuses
            else:
                diffs = [_first_diff(d_old / f, d_new / f) for f in ("program.bin", "ddr.bin")
                         if _digest(d_old / f) != _digest(d_new / f)]
                row["status"] = "DIFFERENT" if diffs else "identical"
                row["detail"] = "; ".join(diffs)
            rows.append(row)
    elapsed = time.perf_counter() - t_start
    n_diff = sum(r["status"] == "DIFFERENT" for r in rows)
    if args.json:
        print(json.dumps({"rev": args.rev, "rows": rows, "skipped": skipped,
                          "different": n_diff, "seconds": elapsed}, indent=1))
    else:
        for r in rows:
            print(f"{r['status']:12} {r['model']:11} {r['target']:12} {r['compiled']:12}"
                  f" {r['seconds'][0]:7.2f}s {r['seconds'][1]:7.2f}s  {r.get('detail', '')}")
        for m, t, why in skipped:
            print(f"{'skipped':12} {m:11} {t:12} {why}")
        print(f"{len(rows)} combinations against {args.rev}: {n_diff} different,"
              f" {sum(r['status'] == 'identical' for r in rows)} identical,"
              f" {sum(r['status'] == 'not compiled' for r in rows)} not compiled at either,"
              f" {len(skipped)} skipped; {elapsed:.0f} s")
    return 1 if n_diff else 0


if __name__ == "__main__":
    sys.exit(main())
