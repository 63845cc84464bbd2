"""The one error type every expected failure of ours derives from.

An `MMR3Error` is a bad input the user can fix: a missing or damaged file, a wrong setting. Its
message names the input (file, and line where there is one), what is wrong and the fix. The `mmr3`
command prints it as one line and exits 1 (`--debug` shows the traceback instead); inside an
lmms-eval run it stops the run with the same message (`hooks.MMR3SetupError`). Anything else that
escapes is a bug of ours and keeps its traceback.
"""

from __future__ import annotations


class MMR3Error(Exception):
    """An expected failure whose message says what is wrong with which input, and how to fix it."""
