"""Saving from the chat: the transcript (Markdown or JSON) and SVG screenshots, into the export
folder, never over a file nor inside the sources or index; each save says where the file went or,
in one line, why it could not be written."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from myoqa import __version__
from myoqa.errors import MyoqaError, printable
from myoqa.output_files import Kept, write_output
from myoqa.tui import transcript
from myoqa.tui.transcript import ExportHeader, Turn

if TYPE_CHECKING:
    from pathlib import Path

    from myoqa.search import Searcher

# How the chat shows a note: message, then title, severity and whether it stays up longer.
Tell = Callable[..., None]


def reason(exc: OSError | MyoqaError) -> str:
    """Why a file could not be written, in one line naming it."""
    if isinstance(exc, MyoqaError):
        return str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    return printable(f"{exc.strerror or exc}{where}")


def export_header(searcher: Searcher | None, sources: Path, mode: str, k: int) -> ExportHeader:
    """What an export records: now, this myoqa, the index that answered (if one is open), the
    sources folder, and the chat's mode and k."""
    index = searcher.index if searcher else None
    return ExportHeader(datetime.now().astimezone(), __version__,
                        str(index.path.absolute()) if index else "",
                        index.manifest.built_at if index else "",
                        str(sources.absolute()), mode, k)


class Saver:
    """Writes into `folder` (never inside a `kept` one) and tells the user how it went."""

    def __init__(self, folder: Path, kept: Sequence[Kept], tell: Tell) -> None:
        self.folder = folder
        self.kept = kept
        self.tell = tell

    def transcript(self, turns: list[Turn], header: ExportHeader, fmt: str) -> None:
        """Save `turns` as "markdown" or "json" with `header`."""
        self._save("transcript", lambda: transcript.export(turns, header, fmt, self.folder,
                                                           self.kept))

    def screenshot(self, svg: str) -> None:
        """Save an SVG screenshot, named by the time it was taken."""
        def write() -> Path:
            path = transcript.free_path(
                self.folder, f"myoqa-screenshot-{datetime.now():%Y%m%d-%H%M%S}", "svg",
                self.kept)
            write_output(path, svg, kept=self.kept)
            return path

        self._save("screenshot", write)

    def _save(self, what: str, write: Callable[[], Path]) -> None:
        """Run `write`, then say where the file went or why it could not be written."""
        try:
            path = write()
        except (OSError, MyoqaError) as exc:
            self.tell(f"Cannot save the {what}: {reason(exc)}", severity="error", long=True)
        else:
            self.tell(f"{what.capitalize()} saved to {path}", title="Saved", long=True)
