"""The float-model file: a graph with float32 weights in one `.npz` (no pickle).

Entries: `__format__` (the string FORMAT), `__graph__` (Graph.to_dict() as a JSON string), and
one float32 array `<layer>/<key>` per weight (e.g. `fc6_a/weight`). See docs/ir.md.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from deepfpga.errors import InputError
from deepfpga.fileio import NPZ_READ_ERRORS, atomic_save_npz, parse_json
from deepfpga.ir.graph import Graph

FORMAT = "deepfpga-float-model/1"


def float_model_arrays(graph: Graph) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "__format__": np.array(FORMAT),
        "__graph__": np.array(json.dumps(graph.to_dict())),
    }
    for lname, params in graph.params.items():
        for key, arr in params.items():
            arrays[f"{lname}/{key}"] = np.asarray(arr, dtype=np.float32)
    return arrays


def save_float_model(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write `graph` (structure and whatever weights it has) atomically to `path`."""
    return atomic_save_npz(path, float_model_arrays(graph))


def load_float_model(path: str | os.PathLike[str]) -> Graph:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such file: {p}")
    if not zipfile.is_zipfile(p):  # np.load would guess at a pickle and say so, misleadingly
        raise InputError(f"{p}: not a .npz file (not a zip archive)")
    try:
        with np.load(p, allow_pickle=False) as z:
            entries = {k: z[k] for k in z.files}
    except NPZ_READ_ERRORS as e:
        raise InputError(f"{p}: not a readable .npz file ({e})") from None
    fmt = entries.pop("__format__", None)
    if fmt is None or fmt.dtype.kind != "U" or str(fmt) != FORMAT:
        raise InputError(
            f"{p}: not a deepfpga float model (entry __format__ must be {FORMAT!r})"
        )
    graph_json = entries.pop("__graph__", None)
    if graph_json is None or graph_json.dtype.kind != "U":
        raise InputError(f"{p}: entry __graph__ (a JSON string) is missing")
    desc = parse_json(str(graph_json), f"{p}: __graph__")
    if not isinstance(desc, dict):
        raise InputError(f"{p}: __graph__ must be a JSON object")
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in entries.items():
        lname, sep, wkey = key.partition("/")
        if not sep or not wkey:
            raise InputError(f"{p}: unexpected entry {key!r} (expected '<layer>/<key>')")
        if arr.dtype.kind != "f":
            raise InputError(f"{p}: entry {key!r} has dtype {arr.dtype}, float expected")
        params.setdefault(lname, {})[wkey] = arr.astype(np.float32, copy=False)
    return Graph.from_dict(desc, params)
