"""deepfpga.parallel and the Ray paths: in-process by default (no Ray imported), a local Ray of
2 workers giving exactly the in-process results for `dse` and for `evaluate`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deepfpga.errors import InputError
from deepfpga.parallel import InProcess, make_executor


def square_setup(shared):
    return shared["k"]


def times(k, item):
    return k * item


def test_in_process_pool_builds_the_state_once_and_keeps_order() -> None:
    pool = InProcess().pool(square_setup, {"k": 3})
    assert list(pool.map_unordered(times, [1, 2, 5])) == [(0, 3), (1, 6), (2, 15)]
    assert isinstance(make_executor(), InProcess)
    with pytest.raises(InputError, match="--workers needs --ray"):
        make_executor(workers=2)


def test_ray_missing_is_a_clear_input_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)      # import ray → ImportError
    with pytest.raises(InputError, match=r"pip install 'deepfpga\[ray\]' \(ray==2.60.0\)"):
        make_executor(ray=True)


@pytest.mark.slow
def test_the_default_path_imports_no_ray(tmp_path, small_space) -> None:
    """`dse` and `evaluate` in-process, in a fresh interpreter: `ray` is never imported."""
    from deepfpga.ir import Conv2d, Flatten, Linear, ReLU, chain
    from deepfpga.quant.qfile import save_qmodel
    from deepfpga.quant.random_model import random_qmodel

    rng = np.random.default_rng(0)
    g = chain("t", (1, 8, 8), [Conv2d("c", (), in_channels=1, out_channels=2, kernel=3,
                                      padding=1), ReLU("r", ()), Flatten("f", ()),
                               Linear("l", (), in_features=128, out_features=3)])
    q = save_qmodel(tmp_path / "q.npz", random_qmodel(g, rng, 8, 8))
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 256, (6, 1, 8, 8), dtype=np.uint8),
             y=np.arange(6) % 3)
    code = textwrap.dedent(f"""
        import sys
        from deepfpga.cli import main
        assert main(["dse", "fmnist-vgg", "--device", "xc7z020", "--space", {str(small_space)!r},
                     "-o", {str(tmp_path / "out")!r}, "--json"]) == 0
        assert main(["evaluate", {str(q)!r}, "--data", {str(tmp_path / "d.npz")!r},
                     "--json"]) == 0
        print("RAY" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "NO RAY",
              file=sys.stderr)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "NO RAY"


# --- on a local Ray of 2 workers (slow: Ray starts in ~5-10 s) --------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'deepfpga[ray]'")
    from deepfpga.parallel import RayCluster

    cluster = RayCluster(None, 2)
    yield cluster
    cluster.close()




@pytest.mark.slow
def test_dse_on_ray_gives_the_in_process_front(ray_cluster, ga_space, tmp_path) -> None:
    from deepfpga.dse.flow import Request, run

    assert ray_cluster.workers == 2
    fronts = []
    for name, ex in (("local", InProcess()), ("ray", ray_cluster)):
        req = Request("fmnist-vgg", "xc7z020", space=str(ga_space), budget=12,
                      search="genetic", population=6, seed=5, out=tmp_path / name)
        s, _ = run(req, ex)
        assert s["executor"]["kind"] == ex.kind and s["counts"]["evaluated"] == 12
        fronts.append(s)
    a, b = fronts
    assert [(r["key"], r["fps"]) for r in a["front"]] == [(r["key"], r["fps"])
                                                          for r in b["front"]]
    assert a["best"] == b["best"] and a["points"] == b["points"]


@pytest.mark.slow
def test_evaluate_on_ray_equals_in_process(ray_cluster, tmp_path, capsys) -> None:
    from deepfpga.cli import main
    from deepfpga.ir import Conv2d, Flatten, Linear, ReLU, chain
    from deepfpga.quant.evaluate import evaluate
    from deepfpga.quant.qfile import save_qmodel
    from deepfpga.quant.random_model import random_qmodel
    from deepfpga.quant.shard import evaluate_sharded

    rng = np.random.default_rng(1)
    w = {"c": {"weight": rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
               "bias": rng.normal(size=4).astype(np.float32)},
         "l": {"weight": rng.normal(size=(5, 256)).astype(np.float32) * 0.1,
               "bias": np.zeros(5, np.float32)}}
    g = chain("t", (1, 8, 8), [Conv2d("c", (), in_channels=1, out_channels=4, kernel=3,
                                      padding=1), ReLU("r", ()), Flatten("f", ()),
                               Linear("l", (), in_features=256, out_features=5)], w)
    x = rng.random((37, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 5, size=37)
    q = random_qmodel(g, rng, 8, 8)
    for model in (q, g):                            # fixed point and float32
        want = evaluate(model, x, y, batch_size=4)
        got, shards = evaluate_sharded(model, x, y, ray_cluster, batch_size=4)
        assert got == want and shards == 5        # 10 batches of 4, two per shard
    # the command line, joining the Ray this module started
    save_qmodel(tmp_path / "q.npz", q)
    np.savez(tmp_path / "d.npz", x=(x * 255).astype(np.uint8), y=y)
    outs = []
    for extra in ([], ["--ray", "--workers", "2"]):
        assert main(["evaluate", str(tmp_path / "q.npz"), "--data", str(tmp_path / "d.npz"),
                     "--batch-size", "4", "--json", *extra]) == 0
        d = json.loads(capsys.readouterr().out)
        d.pop("seconds")
        outs.append(d)
    assert outs[1].pop("executor") == {"kind": "ray", "workers": 2, "shards": 5}
    assert outs[0] == outs[1]
