"""Shared fixtures: the real model, FAISS and BM25 on the real seeds, built once per session.
The helpers every test file uses are in helpers.py (`from helpers import …`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from helpers import MED, SEEDS, FakeEncoder, milvus_server, writable_copy
from myoqa.colbert import ColbertEncoder, wheel_dir
from myoqa.config import CACHE_ENV, Settings
from myoqa.engine import open_searcher
from myoqa.search import Searcher

# Kinds of test that take minutes (markers in pyproject.toml): each is slow, so `make test-fast`
# (`-m "not slow"`) leaves them out while `make test` runs them. A test taking one of these
# session fixtures is of its kind whether or not its file says so.
SLOW_KINDS = ("milvus", "ray", "med", "install", "bench", "faults")
FIXTURE_KINDS = {"med_searcher": "med", "med_root": "med", "milvus_uri": "milvus",
                 "ray_address": "ray"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark a test that uses a slow kind's fixture with that kind, and every test of a slow
    kind `slow` as well."""
    for item in items:
        for fixture in getattr(item, "fixturenames", ()):
            if fixture in FIXTURE_KINDS:
                item.add_marker(FIXTURE_KINDS[fixture])
        if any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's cache folder (shared encoders) for the whole session, and for every myoqa a
    test runs: a temporary one, so tests never touch the real cache in the home folder."""
    before = os.environ.get(CACHE_ENV)
    folder = tmp_path_factory.mktemp("user-cache")
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with the real seeds and an index built once for the whole session."""
    index_dir = tmp_path_factory.mktemp("seed-index") / "index"
    settings = Settings.resolve(sources=SEEDS, index_dir=index_dir)
    open_searcher(settings, notify=lambda _m: None)
    return settings


@pytest.fixture(scope="session")
def searcher(seed_settings: Settings) -> Searcher:
    """One Searcher over the seeds, its query encoder loaded, shared by all tests."""
    s = open_searcher(seed_settings, notify=lambda _m: None)
    s.load_encoder()
    return s


@pytest.fixture()
def source_copy(tmp_path: Path) -> Path:
    """A private copy of the seeds that a test may change."""
    return writable_copy(SEEDS, tmp_path / "sources")


@pytest.fixture()
def read_only() -> Iterator[Callable[[Path], None]]:
    """Makes folders read-only for the test and writable again afterwards."""
    made: list[Path] = []

    def make(folder: Path) -> None:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
            made.append(path)

    yield make
    for path in made:
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture()
def model_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Builds embed with FakeEncoder and export a stand-in encoder (into a cache folder of the
    test's own, for settings resolved after this); the list records each load of the real model
    (which only an export does)."""
    from myoqa import embedding, onnx_encoder
    from myoqa.index import encoders

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "user-cache"))
    loads: list[str] = []

    def load_model(name: str) -> object:
        loads.append(name)
        return object()

    def export_onnx(_model: object, out: Path) -> None:
        (out / "model.onnx").write_bytes(b"stand-in")

    monkeypatch.setattr(embedding, "load_model", load_model)
    monkeypatch.setattr(onnx_encoder, "export_onnx", export_onnx)
    monkeypatch.setattr(encoders, "load_encoder", lambda _folder: FakeEncoder())
    return loads


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Milvus server for the session (see `milvus_server`)."""
    with milvus_server(tmp_path_factory.mktemp("milvus")) as (uri, _server):
        yield uri


@pytest.fixture(scope="session")
def med_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An --index-dir under which `myoqa eval --beir MED` finds MED's index (built once by
    `med_searcher`), so every MED test shares one build."""
    return tmp_path_factory.mktemp("med-root")


@pytest.fixture(scope="session")
def med_searcher(med_root: Path) -> Searcher:
    """The MED BEIR collection indexed locally once, where `eval --beir` under `med_root`
    looks for it."""
    from myoqa import beir
    from myoqa.eval_report import beir_index_dir
    from myoqa.search import SearchParams

    root = Settings.resolve(index_dir=med_root)
    settings = replace(root, index_dir=beir_index_dir(root, MED))
    found = open_searcher(settings, SearchParams(candidates=beir.CANDIDATES),
                          notify=lambda _m: None, sources=beir.load(MED).documents)
    found.load_encoder()
    return found


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local 2-CPU Ray for the session (its start-up is slow, so it is shared)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def colbert() -> ColbertEncoder:
    """The late-interaction encoder (answerai-colbert-small-v1, its graph optimised here),
    loaded once per session."""
    return ColbertEncoder(wheel_dir())
