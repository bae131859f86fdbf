"""The quantized model file: one `.npz` holding integer weights and a JSON description.

Layout (docs/qmodel-format.md is the public description):
- `<layer>/weight`, `<layer>/bias`: the integers of each CONV/FC layer, in the smallest signed
  type holding the layer's format (int8 up to 8 bits, int16 up to 16, int32 up to 32);
- `__meta__`: a 0-d unicode array holding JSON with `format_version`, the graph
  (`Graph.to_dict()`), the input format, every layer's formats and a free `meta` dict.

Loading never unpickles (`allow_pickle=False`) and refuses anything malformed with an InputError
naming the bad array or key.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deepfpga.errors import InputError
from deepfpga.fileio import NPZ_READ_ERRORS, atomic_save_npz, parse_json
from deepfpga.ir import Graph
from deepfpga.quant.fixedpoint import FixedFormat
from deepfpga.quant.qmodel import LayerFormats, QuantizedModel

FORMAT_VERSION = 1
META_KEY = "__meta__"
KIND = "deepfpga-qmodel"
_FORMAT_KEYS = ("input", "weight", "bias", "output")


def _json_safe(obj: Any, where: str) -> Any:
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InputError(f"{where} is not JSON-serialisable: {e}") from None


def is_qmodel_file(path: str | os.PathLike[str]) -> bool:
    """True for an .npz written by save_qmodel (it holds the `__meta__` entry), as opposed to a
    float-model .npz (which holds `__graph__`). A broken file answers False, so that the loader
    the caller falls back to names what is wrong with it."""
    p = Path(path)
    if p.suffix.lower() != ".npz" or not p.is_file():
        return False
    try:
        with zipfile.ZipFile(p) as z:
            names = {n.removesuffix(".npy") for n in z.namelist()}
    except (OSError, zipfile.BadZipFile, NotImplementedError):
        return False
    return META_KEY in names and "__graph__" not in names


def qmodel_to_meta(qmodel: QuantizedModel) -> dict[str, Any]:
    """The JSON description stored under `__meta__` (everything except the integer arrays)."""
    return {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "graph": qmodel.graph.to_dict(),
        "input_format": qmodel.input_format.to_dict(),
        "formats": {name: f.to_dict() for name, f in qmodel.formats.items()},
        "meta": _json_safe(dict(qmodel.meta), "the model's meta dict"),
    }


def save_qmodel(path: str | os.PathLike[str], qmodel: QuantizedModel) -> Path:
    """Write `qmodel` to `path` (an `.npz`, written atomically). Returns the path."""
    qmodel.validate()
    arrays: dict[str, np.ndarray] = {}
    for lname, layer_arrays in qmodel.weights.items():
        f = qmodel.formats[lname]
        for key, a in layer_arrays.items():
            fmt = f.weight if key == "weight" else f.bias
            assert fmt is not None  # validate() guarantees a format for every array
            arrays[f"{lname}/{key}"] = np.asarray(a).astype(fmt.dtype)
    meta = qmodel_to_meta(qmodel)
    arrays[META_KEY] = np.array(json.dumps(meta, sort_keys=True))
    target = Path(path)
    if target.suffix != ".npz":
        raise InputError(f"quantized model file must end in .npz: {target}")
    return atomic_save_npz(target, arrays)


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def _fmt(d: Any, where: str) -> FixedFormat:
    if not isinstance(d, Mapping) or set(d) != {"bw", "fl"}:
        raise InputError(f"{where}: expected {{'bw': int, 'fl': int}}, got {d!r}")
    bw, fl = d["bw"], d["fl"]
    if isinstance(bw, bool) or isinstance(fl, bool) or not isinstance(bw, int) \
            or not isinstance(fl, int):
        raise InputError(f"{where}: bw and fl must be integers, got {d!r}")
    try:
        return FixedFormat(bw, fl)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


def _layer_formats(name: str, d: Any) -> LayerFormats:
    where = f"__meta__ formats[{name!r}]"
    if not isinstance(d, Mapping):
        raise InputError(f"{where}: expected an object, got {type(d).__name__}")
    unknown = set(d) - set(_FORMAT_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("input", "output"):
        if d.get(key) is None:
            raise InputError(f"{where}: missing key {key!r}")
    opt = {k: (_fmt(d[k], f"{where}.{k}") if d.get(k) is not None else None)
           for k in ("weight", "bias")}
    return LayerFormats(_fmt(d["input"], f"{where}.input"), _fmt(d["output"], f"{where}.output"),
                        **opt)


def _read_meta(npz: Any, path: Path) -> dict[str, Any]:
    if META_KEY not in npz.files:
        raise InputError(f"{path}: not a deepfpga quantized model (no {META_KEY!r} entry)")
    try:
        raw = npz[META_KEY]
    except ValueError as e:  # an object array needs pickle, which is refused
        raise InputError(f"{path}: {META_KEY!r} cannot be loaded ({e}); it must be a 0-d"
                         " unicode string array") from None
    if raw.dtype.kind != "U" or raw.shape != ():
        raise InputError(
            f"{path}: {META_KEY!r} must be a 0-d unicode string array, got dtype {raw.dtype}"
            f" shape {raw.shape}"
        )
    meta = parse_json(str(raw), f"{path}: {META_KEY!r}")
    if not isinstance(meta, dict):
        raise InputError(f"{path}: {META_KEY!r} must hold a JSON object")
    if meta.get("kind", KIND) != KIND:
        raise InputError(f"{path}: {META_KEY!r} kind is {meta.get('kind')!r}, not {KIND!r}")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(
            f"{path}: unsupported format_version {version!r} (this deepfpga reads"
            f" {FORMAT_VERSION})"
        )
    for key in ("graph", "input_format", "formats"):
        if key not in meta:
            raise InputError(f"{path}: {META_KEY!r} lacks key {key!r}")
    if not isinstance(meta["formats"], dict):
        raise InputError(f"{path}: {META_KEY!r} key 'formats' must be an object")
    if not isinstance(meta.get("meta", {}), dict):
        raise InputError(f"{path}: {META_KEY!r} key 'meta' must be an object")
    return meta


def _read_array(npz: Any, key: str, path: Path) -> np.ndarray:
    try:
        a = npz[key]
    except ValueError as e:  # object arrays need pickle, which is refused
        raise InputError(f"{path}: array {key!r} cannot be loaded ({e})") from None
    if a.dtype.kind not in "iu":
        raise InputError(f"{path}: array {key!r} has dtype {a.dtype}; integers expected")
    return a


def load_qmodel(path: str | os.PathLike[str]) -> QuantizedModel:
    """Read a quantized model file written by `save_qmodel` (see docs/qmodel-format.md)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such quantized model file: {p}")
    try:
        npz = np.load(p, allow_pickle=False)
    except NPZ_READ_ERRORS as e:
        raise InputError(f"{p}: not a readable .npz file ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise InputError(f"{p}: a single .npy array, not an .npz quantized model")
    try:
        with npz:
            meta = _read_meta(npz, p)
            try:
                graph = Graph.from_dict(meta["graph"])
            except (TypeError, AttributeError) as e:
                raise InputError(f"{p}: {META_KEY!r} graph is malformed ({e})") from None
            input_format = _fmt(meta["input_format"], "__meta__ input_format")
            names = {layer.name for layer in graph.layers}
            extra = sorted(set(meta["formats"]) - names)
            if extra:
                raise InputError(f"{p}: formats given for unknown layers {extra}")
            formats = {name: _layer_formats(name, d) for name, d in meta["formats"].items()}
            weights: dict[str, dict[str, np.ndarray]] = {}
            for key in npz.files:
                if key == META_KEY:
                    continue
                lname, sep, akey = key.rpartition("/")
                if not sep or lname not in names or akey not in ("weight", "bias"):
                    raise InputError(f"{p}: unexpected array {key!r}")
                weights.setdefault(lname, {})[akey] = _read_array(npz, key, p)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
        raise InputError(f"{p}: corrupt .npz file ({type(e).__name__}: {e})") from None
    try:
        return QuantizedModel(graph, input_format, formats, weights, meta.get("meta", {}))
    except InputError as e:
        raise InputError(f"{p}: {e}") from None
