"""Independent tasks in this process or on Ray workers, with the same results either way.

A *pool* runs `fn(state, item)` for many items, where `state = setup(shared)` is built once per
worker (a model, a data set) instead of once per item. `map_unordered(fn, items)` yields
`(index, result)` as tasks finish; callers that need order put results back by index, which is
what makes a Ray run give exactly the in-process results.

- `InProcess()`: one worker, this process, items one after another. Imports no Ray.
- `RayCluster(address, workers)`: `address=None` starts a local Ray with `workers` CPUs (default:
  this machine's cores) and shuts it down on close; `address="HOST:PORT"` (or `ray://...`) joins
  an existing cluster, whose nodes must have deepfpga installed. One actor per worker holds the
  state; each actor has at most one task in flight, so fast and slow items balance.

`fn` and `setup` must be module-level functions (Ray ships them by reference) and results
picklable. An `InputError` raised in a worker is raised again, as itself, in the caller.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from deepfpga.errors import InputError

RAY_PIN = "ray==2.60.0"


class Pool(Protocol):
    workers: int

    def map_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


class Executor(Protocol):
    kind: str
    workers: int

    def pool(self, setup: Callable[[Any], Any], shared: Any) -> Pool: ...

    def close(self) -> None: ...


class _LocalPool:
    workers = 1

    def __init__(self, setup: Callable[[Any], Any], shared: Any) -> None:
        self._state = setup(shared)

    def map_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[int, Any]]:
        for i, item in enumerate(items):
            yield i, fn(self._state, item)

    def close(self) -> None:
        self._state = None


class InProcess:
    """Everything here, in order: the default, and the reference a Ray run must equal."""

    kind = "in-process"
    workers = 1

    def pool(self, setup: Callable[[Any], Any], shared: Any) -> Pool:
        return _LocalPool(setup, shared)

    def close(self) -> None:
        pass


class _Actor:
    """A Ray worker: the state built once, then one item at a time."""

    def __init__(self, setup: Callable[[Any], Any], shared: Any) -> None:
        self.state = setup(shared)

    def run(self, fn: Callable[[Any, Any], Any], item: Any) -> Any:
        return fn(self.state, item)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray needs Ray, an optional extra: pip install 'deepfpga[ray]'"
                         f" ({RAY_PIN})") from None
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse an unreachable HOST:PORT at once (Ray itself keeps retrying for minutes)."""
    if address.startswith("ray://") or address == "auto":
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray-address {address!r}: expected HOST:PORT (the head node's GCS"
                         " port, 6379 by default), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise InputError(f"--ray-address {address}: cannot reach a Ray cluster there"
                         f" ({e.strerror or type(e).__name__})") from None


class RayCluster:
    """A local Ray started here (`address=None`) or an existing cluster."""

    kind = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise InputError(f"--workers must be at least 1, got {workers}")
        if address:
            _check_reachable(address)
        ray = _import_ray()
        self._ray = ray
        self._owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
            try:
                if address:
                    ray.init(address=address, **kw)
                else:
                    ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                             **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise InputError(f"cannot start or join {where}: {first}") from None
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, min(workers, cpus) if workers else cpus)
        self.address = address or "local"

    def pool(self, setup: Callable[[Any], Any], shared: Any) -> Pool:
        return _RayPool(self._ray, self.workers, setup, shared)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


class _RayPool:
    def __init__(self, ray: Any, workers: int, setup: Callable[[Any], Any], shared: Any) -> None:
        self._ray = ray
        actor = ray.remote(num_cpus=1)(_Actor)
        ref = ray.put(shared)
        self._actors = [actor.remote(setup, ref) for _ in range(workers)]
        self.workers = workers

    def map_unordered(self, fn: Callable[[Any, Any], Any], items: Iterable[Any]
                      ) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        todo = iter(enumerate(items))
        running: dict[Any, tuple[int, Any]] = {}   # result ref → (item index, actor)

        def submit(actor: Any) -> None:
            nxt = next(todo, None)
            if nxt is not None:
                running[actor.run.remote(fn, nxt[1])] = (nxt[0], actor)

        for a in self._actors:
            submit(a)
        try:
            while running:
                (done,), _ = ray.wait(list(running), num_returns=1)
                index, actor = running.pop(done)
                result = self._get(done)
                submit(actor)
                yield index, result
        finally:
            for ref in running:      # interrupted or failed: drop what is still queued
                with contextlib.suppress(Exception):    # best effort: close() kills actors
                    ray.cancel(ref)

    def _get(self, ref: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(ref)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, InputError):
                raise InputError(str(cause)) from None
            raise

    def close(self) -> None:
        for a in self._actors:
            self._ray.kill(a)
        self._actors = []


def make_executor(ray: bool = False, address: str | None = None,
                  workers: int | None = None) -> Executor:
    """In-process unless `ray` or `address` is given (the `--ray` / `--ray-address` flags)."""
    if ray or address:
        return RayCluster(address, workers)
    if workers is not None and workers != 1:
        raise InputError("--workers needs --ray or --ray-address (in-process runs use one"
                         " worker)")
    return InProcess()
