"""People's text made fit for one line of a prompt or an infotext.

A prompt is written into a picture's "parameters" text one line per part (prompt, "Negative
prompt: …", parameters), and that text is read back line by line; a newline in a person's words
would let them write a line of their own there, such as a forged negative prompt. Other control
characters do similar mischief where the text is shown: a carriage return or a vertical tab break
lines for other readers, bidi overrides make a prompt read differently in the admin than it is.
"""

import re

# C0 controls (tab, line feed, carriage return, …), DEL, C1 controls (NEL among them), the Unicode
# line and paragraph separators, the bidi embeddings, overrides and isolates, and lone surrogates
# (which no UTF-8 text, so no PNG text chunk, can hold).
UNSAFE_CHARACTERS = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{UNSAFE_CHARACTERS}]")
# A run of whitespace and unsafe characters. Matched as one run and inspected in Python, not with
# a pattern that needs an unsafe character inside, which would backtrack quadratically through a
# long run of plain spaces.
_RUN = re.compile(rf"[\s{UNSAFE_CHARACTERS}]+")


def has_unsafe(text: str) -> bool:
    """Whether ``text`` holds a character that ``one_line`` would replace."""
    return _UNSAFE.search(text) is not None


def one_line(text: str) -> str:
    """``text`` with each run of whitespace holding an unsafe character replaced by one space.

    Runs of plain spaces are kept as written: only what breaks lines or reorders text goes.
    """
    if not has_unsafe(text):
        return text
    return _RUN.sub(lambda run: " " if has_unsafe(run.group()) else run.group(), text)


def escape_unsafe(text: str) -> str:
    """``text`` with every unsafe character written as a ``\\uXXXX`` escape, for JSON strings."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
