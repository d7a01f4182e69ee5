"""Where things live and which model is used: defaults, overridable by MYOQA_* variables and flags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from myoqa.scale.milvus_settings import MilvusSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def default_sources() -> Path:
    """The sources directory: $MYOQA_SOURCES, else the project's seeds/."""
    return Path(os.environ.get("MYOQA_SOURCES") or PROJECT_ROOT / "seeds")


def default_index_dir() -> Path:
    """The index directory: $MYOQA_INDEX_DIR, else the project's index/."""
    return Path(os.environ.get("MYOQA_INDEX_DIR") or PROJECT_ROOT / "index")


def default_model() -> str:
    """The embedding model name or path: $MYOQA_MODEL, else the bundled all-MiniLM-L6-v2."""
    return os.environ.get("MYOQA_MODEL") or DEFAULT_MODEL


@dataclass(frozen=True)
class Settings:
    """The places a run depends on, resolved once by the caller: sources, index, model, and
    where the index lives (`backend`: local files, or a Milvus server in `milvus`) and where
    a build embeds (`embed_with`: this process, or the Ray cluster at `ray_address`)."""

    sources: Path
    index_dir: Path
    model: str
    backend: str = "local"
    milvus: MilvusSettings | None = None
    embed_with: str = "local"
    ray_address: str | None = None

    @classmethod
    def resolve(
        cls, sources: str | Path | None = None, index_dir: str | Path | None = None,
        model: str | None = None, backend: str | None = None, milvus_uri: str | None = None,
        milvus_token: str | None = None, embed_with: str | None = None,
        ray_address: str | None = None,
    ) -> Settings:
        """Flags win over environment variables (MYOQA_BACKEND, MYOQA_MILVUS_URI, …), which win
        over the defaults."""
        from myoqa.scale.milvus_settings import MilvusSettings, resolve_backend

        backend = resolve_backend(backend)
        return cls(
            sources=Path(sources).expanduser() if sources else default_sources(),
            index_dir=Path(index_dir).expanduser() if index_dir else default_index_dir(),
            model=model or default_model(),
            backend=backend,
            milvus=MilvusSettings.resolve(milvus_uri, milvus_token) if backend == "milvus"
            else None,
            embed_with=embed_with or "local",
            ray_address=ray_address,
        )
