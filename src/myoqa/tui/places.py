"""Where the chat keeps its own small files and where it puts what the user exports.

Nothing is written into the package or the current folder: the question history lives in the
user's data folder, exports (transcripts, screenshots) in a folder the user chose or else their
documents folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from myoqa.output_files import Kept, holder

APP_NAME = "myoqa"


def data_dir(chosen: Path | None = None) -> Path:
    """The chat's own files: `chosen` (Settings.data_dir, from $MYOQA_DATA_DIR), else the
    platform's user data folder for myoqa (e.g. ~/.local/share/myoqa)."""
    if chosen:
        return chosen
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False)


def export_dir(chosen: Path | None = None, kept: Sequence[Kept] = (),
               data: Path | None = None) -> Path:
    """Where exports go: `chosen` (Settings.export_dir: --export-dir, else $MYOQA_EXPORT_DIR),
    else a `myoqa` folder in the user's documents folder when that exists, else `exports` in
    the data folder (`data`, as `data_dir` takes it). A default inside a `kept` folder
    (documents that are the sources) gives way to the next; a chosen folder is returned as it
    is, for the caller to refuse by name (`output_files.check_folder`)."""
    if chosen:
        return chosen
    import platformdirs

    documents = platformdirs.user_documents_path()
    mine = documents / APP_NAME
    if documents.is_dir() and documents != Path.home() and holder(mine, kept) is None:
        return mine
    return data_dir(data) / "exports"

