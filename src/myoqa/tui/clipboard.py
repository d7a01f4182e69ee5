"""Copying text for the user, and saying honestly whether it reached a clipboard.

The rule:
1. The system clipboard, through pyperclip (xclip, xsel or wl-copy on Linux, pbcopy on macOS,
   the Windows clipboard). It counts as copied only when reading the clipboard back gives the
   text (pyperclip does not check the tool's exit status).
2. Else the terminal's clipboard, through the OSC 52 escape sequence, but only when the terminal
   is known to honour it: MYOQA_CLIPBOARD=osc52 says so (resolved in config.Settings and passed
   here as `trust_osc52`), or the terminal names itself as one
   that allows it by default (kitty, foot, Alacritty, WezTerm, Ghostty, Windows Terminal). Under
   tmux it also needs tmux's `set-clipboard on` (tmux's default, `external`, drops the sequence);
   under GNU screen it is never claimed. Most terminals silently ignore OSC 52 (or ask first),
   so it is never reported as copied on a guess.
3. Else nothing is copied, and the message says so and how to fix it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Terminals whose default configuration accepts OSC 52 clipboard writes, by $TERM ...
OSC52_TERMS = frozenset({"xterm-kitty", "foot", "foot-extra", "alacritty", "wezterm",
                         "xterm-ghostty"})
# ... and by $TERM_PROGRAM (kept by tmux from the terminal it was started in).
OSC52_PROGRAMS = frozenset({"WezTerm", "ghostty", "kitty", "Alacritty"})
TMUX_QUERY_SECONDS = 2.0
NO_TOOL_HINT = ("install xclip, xsel or wl-clipboard, or set MYOQA_CLIPBOARD=osc52 if your "
                "terminal accepts OSC 52")


@dataclass(frozen=True)
class CopyOutcome:
    """Whether the text reached a clipboard, and the sentence that tells the user."""

    copied: bool
    message: str


def _tmux_passes_osc52() -> bool:
    """Whether tmux forwards applications' OSC 52 to the terminal (`set-clipboard on`)."""
    try:
        shown = subprocess.run(["tmux", "show-options", "-gv", "set-clipboard"],
                               capture_output=True, text=True, timeout=TMUX_QUERY_SECONDS,
                               check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return shown.returncode == 0 and shown.stdout.strip() == "on"


def terminal_accepts_osc52(env: Mapping[str, str], trust_osc52: bool = False) -> bool:
    """Whether OSC 52 is known to reach a clipboard from here (see the module's rule): the user
    said so (`trust_osc52`), or the terminal variables in `env` name a terminal that takes it."""
    if trust_osc52:
        return True
    if env.get("STY"):
        return False
    known = (env.get("TERM", "") in OSC52_TERMS or env.get("TERM_PROGRAM", "") in OSC52_PROGRAMS
             or bool(env.get("WT_SESSION")) or bool(env.get("KITTY_WINDOW_ID")))
    if not known:
        return False
    return not env.get("TMUX") or _tmux_passes_osc52()


def _system_copy(text: str) -> str:
    """Copy through the system clipboard; '' when it worked, else why not."""
    import pyperclip

    try:
        copy, paste = pyperclip.determine_clipboard()
        copy(text)
        pasted = paste()
    except (pyperclip.PyperclipException, OSError, subprocess.SubprocessError) as exc:
        first = str(exc).split("\n")[0]
        return "no clipboard tool found" if "could not find" in first else first
    if pasted.rstrip("\n") != text.rstrip("\n"):
        return "the clipboard did not take the text"
    return ""


def copy_text(text: str, send_osc52: Callable[[str], None], trust_osc52: bool = False,
              env: Mapping[str, str] | None = None) -> CopyOutcome:
    """Copy `text` by the first route that is known to work; `send_osc52` writes the escape
    sequence to the terminal (the app's own), used without a working system clipboard when
    `trust_osc52` or the terminal (named in `env`, default the environment) takes it."""
    env = os.environ if env is None else env
    problem = _system_copy(text)
    if not problem:
        return CopyOutcome(True, "Copied to the clipboard")
    if terminal_accepts_osc52(env, trust_osc52):
        send_osc52(text)
        return CopyOutcome(True, "Copied through the terminal (OSC 52)")
    return CopyOutcome(False, f"Could not copy: {problem} ({NO_TOOL_HINT})")
