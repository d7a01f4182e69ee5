"""What embeds a build's new passages, chosen at the edge from the settings and handed to the
index layer as a plain factory (folder → encoder), so the index never reaches into a backend."""

from __future__ import annotations

from pathlib import Path

from myoqa.config import Settings
from myoqa.index import encoders
from myoqa.index.build import Encoder
from myoqa.index.opener import EncoderFactory


def encoder_factory(settings: Settings) -> EncoderFactory:
    """The ONNX encoder here, or on a Ray cluster with `--embed-with ray` (the same encoder
    files, shipped to its workers)."""
    return lambda folder: encoder_for(settings, folder)


def encoder_for(settings: Settings, folder: Path) -> Encoder:
    """The encoder of `folder` that `settings.embed_with` asks for."""
    if settings.embed_with == "ray":
        from myoqa.scale.ray_embed import RayEncoder

        return RayEncoder(folder, settings.ray_address)
    return encoders.load_encoder(folder)


def check_embedder(settings: Settings) -> None:
    """Before a build reads and chunks the sources: one clear error unless the Ray cluster
    `--ray-address` names answers (none, or `auto`: one is started here)."""
    if settings.embed_with == "ray" and settings.ray_address not in (None, "auto"):
        from myoqa.scale.ray_embed import check_reachable

        check_reachable(settings.ray_address)
