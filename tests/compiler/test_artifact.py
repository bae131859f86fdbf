"""The compiled artifact: typed Manifest, JSON at the file boundary, versions, Compiled checks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

import numpy as np
import pytest

from deepfpga.compiler.artifact import (
    MANIFEST_VERSION,
    AccelStep,
    Compiled,
    HostEntry,
    Manifest,
    load_compiled,
)
from deepfpga.compiler.compile import compile_model
from deepfpga.errors import InputError
from deepfpga.hw.config import load_config
from deepfpga.ir import Conv2d, Flatten, Linear, ReLU, Softmax, chain
from deepfpga.quant.random_model import random_qmodel

TINY = load_config("tiny")


@pytest.fixture(scope="module")
def compiled() -> Compiled:
    g = chain("a", (2, 8, 8), [
        Conv2d("c", (), in_channels=2, out_channels=4, kernel=(3, 3), padding=(1, 1)),
        ReLU("r", ()), Flatten("f", ()), Linear("l", (), in_features=256, out_features=5),
        Softmax("s", ())])
    return compile_model(random_qmodel(g, np.random.default_rng(0), 16, 16), TINY)


def _json(c: Compiled) -> dict:
    return json.loads(json.dumps(c.manifest.to_dict()))


def test_manifest_round_trips_through_json(compiled: Compiled) -> None:
    back = Manifest.from_dict(_json(compiled))
    assert back == compiled.manifest
    assert back.to_dict() == compiled.manifest.to_dict()


def test_manifest_is_typed(compiled: Compiled) -> None:
    m = compiled.manifest
    assert [type(s) for s in m.schedule] == [AccelStep, HostEntry]
    assert [s.name for s in m.layers] == ["c", "l"]
    assert m.layers[0].tiling.order in ("spatial", "weights") and m.layers[0].ops == \
        2 * m.layers[0].macs
    (host,) = m.host_steps
    assert host.layer == "s" and host.graph_output and host.float_output
    assert m.segments[0].instructions == (0, len(compiled.program.instructions))
    assert m.tensors[m.input].on_ddr and m.tensors[m.layers[0].output].region == "t:r"


def test_manifest_is_not_a_mapping(compiled: Compiled) -> None:
    """Typed fields only: no string-keyed view of the JSON; changes go through replace."""
    m = compiled.manifest
    assert not isinstance(m, Mapping)
    with pytest.raises(TypeError):
        m["arena"]  # noqa: B018
    d = m.to_dict()
    assert d["arena"] == list(m.arena) and d["version"] == MANIFEST_VERSION
    edited = dataclasses.replace(m, schedule=())
    assert edited.schedule == () and m.schedule and edited.layers == m.layers


@pytest.mark.parametrize("version", [1, MANIFEST_VERSION + 1, None])
def test_other_versions_are_refused(compiled: Compiled, version) -> None:
    d = _json(compiled)
    d["version"] = version
    with pytest.raises(InputError, match=f"version {version!r} is not supported .*this is"
                                         f" version {MANIFEST_VERSION}"):
        Manifest.from_dict(d)
    d["format"] = "something-else"
    with pytest.raises(InputError, match="format 'something-else'"):
        Manifest.from_dict(d)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["tensors"]["input"].pop("shape"), r"tensors\['input'\] has no key 'shape'"),
    (lambda d: d["layers"][0].update(stride="1"), r"layers\[0\].stride must be int"),
    (lambda d: d["schedule"][0].update(kind="gpu"), r"schedule\[0\].kind must be 'accel' or"),
    (lambda d: d["outputs"][0].update(tensor="nope"), "output 's' names unknown tensor 'nope'"),
    (lambda d: d["regions"][0].pop("live"), r"regions\[0\] is malformed"),
    (lambda d: d.update(arena=[1]), "arena must be a list of 2 integers"),
    (lambda d: d["schedule"][1]["spec"].update(kind="warp"),
     r"schedule\[1\].spec: unknown layer kind 'warp'"),
    (lambda d: d["tensors"]["input"].update(start=None),
     r"tensors\['input'\] is on DDR but has no start"),
])
def test_malformed_manifest_names_the_key(compiled: Compiled, edit, message) -> None:
    d = _json(compiled)
    edit(d)
    with pytest.raises(InputError, match=message):
        Manifest.from_dict(d)


def test_compiled_checks_config_and_sizes_once(compiled: Compiled) -> None:
    other = TINY.replace(num_pe=2)
    with pytest.raises(InputError, match="program was compiled for a different accelerator"):
        dataclasses.replace(compiled, config=other)
    with pytest.raises(InputError, match="DDR image is 3 bytes, the manifest says"):
        dataclasses.replace(compiled, ddr_image=b"abc")
    m = dataclasses.replace(compiled.manifest, config=dataclasses.replace(
        compiled.manifest.config, hash="00" * 32))
    with pytest.raises(InputError, match="manifest was written for a different"):
        dataclasses.replace(compiled, manifest=m)


def test_write_and_load_compiled(compiled: Compiled, tmp_path) -> None:
    files = compiled.write(tmp_path)
    assert set(files) == {"program", "ddr", "manifest"}
    back = load_compiled(tmp_path, TINY)
    assert back.program == compiled.program and back.ddr_image == compiled.ddr_image
    assert back.manifest == compiled.manifest
    with pytest.raises(InputError, match="different accelerator configuration"):
        load_compiled(tmp_path, TINY.replace(num_pe=2))
    (tmp_path / "ddr.bin").unlink()
    with pytest.raises(InputError, match=r"ddr.bin missing"):
        load_compiled(tmp_path, TINY)
