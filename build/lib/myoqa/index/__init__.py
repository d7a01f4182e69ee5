"""The index: built from the sources (`build`), kept on disk (`store`, `ownership`, `encoders`),
described by its `manifest`, judged by `health`, and opened for searching by `opener`."""

from myoqa.index.build import BuildParams, ProgressFactory
from myoqa.index.manifest import IndexProblem, Manifest, NewerFormat
from myoqa.index.tables import Index, UnitTable

__all__ = ["BuildParams", "Index", "IndexProblem", "Manifest", "NewerFormat", "ProgressFactory",
           "UnitTable"]
