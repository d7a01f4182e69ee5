"""The on-disk index: manifest, staleness, damage detection, atomic replacement, no pickle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from myoqa import index as store
from myoqa.config import PROJECT_ROOT, Settings
from myoqa.engine import ready_index
from myoqa.errors import MyoqaError


def _copy_index(settings: Settings, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(settings.index_dir, target)
    return target


def test_manifest_records_what_the_build_depends_on(seed_settings: Settings) -> None:
    manifest = store.read_manifest(seed_settings.index_dir)
    assert manifest["model"] == {"name": "all-MiniLM-L6-v2", "dimension": 384,
                                 "query_encoder": "onnx"}
    assert {"window_words", "prose_max_words"} <= set(manifest["chunking"])
    assert manifest["analyzer"] == {"stem": True, "stopwords": True, "rules": 2}
    assert {s["name"] for s in manifest["sources"]} == {
        p.name for p in seed_settings.sources.iterdir()}
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    assert {"faiss-cpu", "rank-bm25", "numpy"} <= set(manifest["versions"])


def test_current_index_is_reused_without_rebuilding(seed_settings: Settings) -> None:
    said: list[str] = []
    before = store.current_build(seed_settings.index_dir)
    ready_index(seed_settings, notify=said.append)
    assert said == [] and store.current_build(seed_settings.index_dir) == before


def test_changed_source_triggers_a_rebuild(seed_settings: Settings, source_copy: Path,
                                           tmp_path: Path) -> None:
    settings = Settings.resolve(source_copy, _copy_index(seed_settings, tmp_path))
    old = store.current_build(settings.index_dir)
    extra = "\n\nMyoclonus in zebras is called stripe twitch syndrome."
    with open(source_copy / "001_f6f440b41de63d6e.txt", "a", encoding="utf-8") as fh:
        fh.write(extra)
    said: list[str] = []
    fresh = ready_index(settings, notify=said.append)
    assert len(said) == 1 and "sources changed" in said[0]
    assert fresh.path != old and store.current_build(settings.index_dir) == fresh.path
    assert fresh.texts["001_f6f440b41de63d6e.txt"].endswith(extra)


@pytest.mark.parametrize("damage", ["truncate_faiss", "garbage_manifest", "newer_format",
                                    "row_mismatch", "missing_pointer_target"])
def test_damage_is_detected_by_name(seed_settings: Settings, tmp_path: Path, damage: str) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    build = store.current_build(index_dir)
    if damage == "truncate_faiss":
        data = (build / "passages.faiss").read_bytes()
        (build / "passages.faiss").write_bytes(data[:len(data) // 3])
    elif damage == "garbage_manifest":
        (build / "manifest.json").write_text("{not json", encoding="utf-8")
    elif damage == "newer_format":
        manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
        manifest["format_version"] = store.FORMAT_VERSION + 1
        (build / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    elif damage == "row_mismatch":
        rows = np.load(build / "passages.npy")
        np.save(build / "passages.npy", rows[:-1])
    else:
        (index_dir / "CURRENT").write_text("build-gone\n", encoding="utf-8")
    with pytest.raises(MyoqaError) as info:
        store.load(index_dir)
    assert str(index_dir) in str(info.value) or "build-gone" in str(info.value)
    assert "myoqa" in str(info.value)


def test_failed_build_leaves_the_previous_index(seed_settings: Settings, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir = _copy_index(seed_settings, tmp_path)
    good = store.load(index_dir)

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write_json", disk_full)
    with pytest.raises(OSError):
        store.save(good, index_dir)
    assert store.current_build(index_dir) == good.path
    np.testing.assert_array_equal(store.load(index_dir).passages.array(), good.passages.array())
    assert not list(index_dir.glob(".tmp-*"))


def test_no_pickle_anywhere_in_the_code() -> None:
    for path in (PROJECT_ROOT / "src").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import pickle" not in text and "allow_pickle=True" not in text, path
        assert "torch.load" not in text, path
