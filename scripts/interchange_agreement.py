"""Agreement of exported / imported quantized ONNX with deepfpga's bit-exact executor.

1. Both shipped models quantized (8-bit, 1,000 calibration images), exported as QDQ with and
   without the half-LSB rounding bias, run in onnxruntime on the test images: output integers and
   predictions compared with the reference executor.
2. With --brevitas BITS...: Brevitas QAT models (scripts/train_brevitas_fmnist.py, weights at
   BITS) imported from their QONNX files; predictions compared with Brevitas, and every
   differing value of every layer checked for being an exact tie (Brevitas rounds half to
   even, the contract half up).

    python scripts/interchange_agreement.py --images 10000 [--brevitas 4 6 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 500


def _batches(fn: Any, x: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def qdq_agreement(name: str, x: np.ndarray, calib: np.ndarray) -> dict[str, Any]:
    import onnxruntime as ort

    from deepfpga import zoo
    from deepfpga.interchange.export import export_onnx, output_integers
    from deepfpga.quant.flow import quantize
    from deepfpga.quant.reference import ReferenceExecutor

    q = quantize(zoo.get(name), calib, bits="8")
    ex = ReferenceExecutor.build(q)
    ref = _batches(lambda b: ex.run(b, float_input=True).output, x)
    out: dict[str, Any] = {"model": name, "images": len(x)}
    for half in (True, False):
        s = ort.InferenceSession(export_onnx(q, "qdq", half_lsb=half),
                                 providers=["CPUExecutionProvider"])
        got = output_integers(q, _batches(
            lambda b, s=s: s.run(None, {"input": b.astype(np.float32)})[0], x))
        out["half_lsb" if half else "plain"] = {
            "values_differing": int((got != ref).sum()), "values": int(ref.size),
            "images_differing": int((got != ref).any(1).sum()),
            "predictions_differing": int((got.argmax(1) != ref.argmax(1)).sum())}
    return out


def _load_trainer() -> Any:
    path = Path(__file__).with_name("train_brevitas_fmnist.py")
    spec = importlib.util.spec_from_file_location("train_brevitas_fmnist", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tie_check(q: Any, layer: str, x_int: np.ndarray, y_file: np.ndarray) -> dict[str, int]:
    """Our layer (with its ReLU) on the file's integer input vs the file's integer output;
    every differing value classified as an exact tie of the data shift or not."""
    from deepfpga.ir import Conv2d
    from deepfpga.quant.fixedpoint import align_bias
    from deepfpga.quant.reference import conv_acc, execute_layer, fc_acc

    lay = q.graph.layer(layer)
    f = q.formats[layer]
    y, _ = execute_layer(q, layer, [x_int])
    relu = any(c.kind == "relu" for c in q.graph.consumers(layer))
    if relu:
        y = np.maximum(y, 0)
    w = np.asarray(q.weights[layer]["weight"])
    acc = (conv_acc(x_int, w, lay.stride, lay.padding) if isinstance(lay, Conv2d)
           else fc_acc(x_int, w))
    if "bias" in q.weights[layer]:
        b = align_bias(q.weights[layer]["bias"], f.bias.fl, f.fl_acc)
        acc = acc + (b.reshape(1, -1, 1, 1) if acc.ndim == 4 else b)
    s = f.fl_acc - f.output.fl
    diff = y != y_file
    tie = (np.mod(acc, 1 << s) == (1 << (s - 1))) if s > 0 else np.zeros_like(diff)
    return {"values": int(y.size), "differing": int(diff.sum()),
            "differing_ties": int((diff & tie).sum()),
            "differing_not_ties": int((diff & ~tie).sum()), "ties": int(tie.sum())}


def _chunked_ties(q: Any, layer: str, x_int: np.ndarray, y_file: np.ndarray) -> dict[str, int]:
    total: dict[str, int] = {}
    for i in range(0, len(x_int), BATCH):
        for k, v in tie_check(q, layer, x_int[i:i + BATCH], y_file[i:i + BATCH]).items():
            total[k] = total.get(k, 0) + v
    return total


def brevitas_integers(net: Any, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Brevitas' scores and its integers at each requantizer (from its quantized tensors) for
    the network of scripts/train_brevitas_fmnist.py."""
    import torch

    seen: dict[str, list[np.ndarray]] = {}

    def hook(key: str) -> Any:
        def f(_m: Any, _i: Any, o: Any) -> None:
            seen.setdefault(key, []).append(o.int().detach().numpy().astype(np.int64))
        return f

    keys = ("inp", "relu1", "relu2", "out")
    handles = [getattr(net, k).register_forward_hook(hook(k)) for k in keys]
    flag = net.out.return_quant_tensor
    net.out.return_quant_tensor = True
    scores = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), BATCH):
                scores.append(net(torch.from_numpy(x[i:i + BATCH].astype(np.float32))).value
                              .numpy())
    finally:
        net.out.return_quant_tensor = flag
        for h in handles:
            h.remove()
    return np.concatenate(scores), {k: np.concatenate(v) for k, v in seen.items()}


def brevitas_layers(net: Any, q: Any, x: np.ndarray,
                    ints: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, int]]:
    """Per CONV/FC layer: our layer on Brevitas' integer input vs Brevitas' integer output."""
    import torch

    if ints is None:
        ints = brevitas_integers(net, x)[1]
    names = [la.name for la in q.graph.layers if la.kind in ("conv", "fc")]
    pool = torch.nn.functional.max_pool2d
    inputs = [ints["inp"], pool(torch.from_numpy(ints["relu1"]), 2).numpy(),
              pool(torch.from_numpy(ints["relu2"]), 2).numpy().reshape(len(x), -1)]
    outputs = [ints["relu1"], ints["relu2"], ints["out"]]
    return {n: _chunked_ties(q, n, xi, yo)
            for n, xi, yo in zip(names, inputs, outputs, strict=True)}


def brevitas_agreement(x: np.ndarray, y: np.ndarray, train_n: int, epochs: int,
                       workdir: Path, bits: int = 8) -> dict[str, Any]:
    from deepfpga.data import load_dataset
    from deepfpga.interchange.onnx_quant import load_quantized_onnx
    from deepfpga.quant.reference import execute

    tb = _load_trainer()
    tr = load_dataset("fashion-mnist", "train", train_n)
    net = tb.train(tb.build(bits), tr.x, tr.y, epochs, 0)
    path = tb.export(net, workdir / f"brevitas-fmnist-w{bits}.onnx")
    imp = load_quantized_onnx(path)
    q = imp.qmodel
    bs, ints = brevitas_integers(net, x)
    ours = _batches(lambda b: execute(q, b, float_input=True).output, x)
    ours_in = _batches(lambda b: execute(q, b, float_input=True, keep={"input"}).layers["input"],
                       x)
    return {
        "weight_bits": bits, "train_images": train_n, "epochs": epochs, "test_images": len(x),
        "notes": imp.notes,
        "accuracy_brevitas": float((bs.argmax(1) == y).mean()),
        "accuracy_deepfpga": float((ours.argmax(1) == y).mean()),
        "input_integers_differing": int((ours_in != ints["inp"]).sum()),
        "output_values_differing": int((ours != ints["out"]).sum()),
        "predictions_differing": int((ours.argmax(1) != bs.argmax(1)).sum()),
        "layers": brevitas_layers(net, q, x, ints),
    }


def main() -> None:
    from deepfpga.data import load_dataset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--brevitas", type=int, nargs="*", metavar="BITS",
                    help="also Brevitas QAT models with these weight widths (4 6 8)")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--no-qdq", action="store_true", help="skip the shipped models' QDQ part")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args()
    test = load_dataset("fashion-mnist", "test", a.images)
    calib = load_dataset("fashion-mnist", "train", a.calib)
    res: dict[str, Any] = {}
    if not a.no_qdq:
        res["qdq"] = [qdq_agreement(m, test.x, calib.x) for m in ("fmnist-vgg", "fmnist-alex")]
    res["brevitas"] = [brevitas_agreement(test.x, test.y, a.train, a.epochs, Path(a.workdir), b)
                       for b in a.brevitas or ()]
    text = json.dumps(res, indent=2)
    print(text)
    if a.json:
        Path(a.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
