"""Prompts as the AUTOMATIC1111 WebUI reads them, their limits, and the prompt builder.

The grammar is the WebUI's (``modules/prompt_parser.py``, ``modules/extra_networks.py``,
``modules/sd_hijack_clip.py``): ``(x)`` ×1.1, ``[x]`` ÷1.1, ``(x:1.5)``, backslash escapes,
``BREAK``, ``<lora:name:weight>``, and 75-token windows with comma back-tracking. A prompt written
for the WebUI means the same thing here; its weighted CLIP embeddings are
``pipelines.prompt_encoding``'s.

Where the WebUI would crash or silently misbehave (a weight that is not a number, a weight so large
it overflows), the parser never raises: it keeps going and lists the problem in
``ParsedPrompt.problems``; ``validate_prompt`` turns those into an ``InvalidInputError``.

Unlike the WebUI, a prompt is encoded only up to ``MAX_PROMPT_WINDOWS`` windows
(``MAX_PROMPT_TOKENS`` tokens); a longer one is refused, cheaply, before any encoding. Text from
people and from the database reaches a prompt on one line (``pipelines.text.one_line``), and a
garment's description only with its first ``DESCRIPTION_PROMPT_WORDS`` words.

Nothing here needs a tokenizer or torch (``token_windows`` is given the tokenizing function), so
the web process parses, checks and builds prompts without them.
"""

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.errors import InvalidInputError
from pipelines.text import UNSAFE_CHARACTERS, one_line
from pipelines.types import CATEGORIES

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_MARKER = ("BREAK", -1.0)
# Larger weights only make noise; the limit keeps nested multiplications finite.
WEIGHT_LIMIT = 1000.0

CHUNK_LENGTH = 75  # prompt tokens per window; BOS and EOS make it CLIP's 77
COMMA_BACKTRACK = 20  # the WebUI's default "comma_padding_backtrack"
# The ids of SD1.x's CLIP tokenizer (openai/clip-vit-large-patch14).
CLIP_BOS_ID = 49406
CLIP_EOS_ID = 49407
CLIP_COMMA_ID = 267

# Every window is one more pass of the text encoder and 77 more tokens that each UNet step's
# cross-attention reads, so a prompt's windows are capped. Six hold the longest prompt the
# builder makes from ordinary words with every part at its cap (garment words, description,
# scene, model, the person's USER_TEXT_MAX characters: about 300–370 CLIP tokens), and the
# WebUI's long hand-written prompts (two to four windows); an unbounded count let a 2 MB garment
# description put two million tokens through the encoder and hold a worker for hours.
MAX_PROMPT_WINDOWS = 6
MAX_PROMPT_TOKENS = MAX_PROMPT_WINDOWS * CHUNK_LENGTH  # 450
# Text longer than this is refused by its length alone, before it is tokenized, so counting never
# costs more than tokenizing this many characters (milliseconds). CLIP's tokens average four to
# five characters of English, spaces included; only a prompt of unusually long words and much
# spacing could be longer than 16 per token and yet within MAX_PROMPT_TOKENS.
MAX_PROMPT_CHARS = 16 * MAX_PROMPT_TOKENS  # 7,200

USER_TEXT_MAX = 300
# An inpaint's prompt: the client's words are all of it. Ordinary words of this many characters
# are about 200–300 CLIP tokens, within MAX_PROMPT_TOKENS with BASE_NEGATIVE's ~50; only text
# dense in digits, symbols or emoji (up to a token per character, or more) can pass this cap and
# exceed the token cap, and the worker refuses that at once, naming the field.
FREE_TEXT_MAX = 1000
USER_WEIGHT_RANGE = (0.0, 2.0)
# How much of a garment's description goes into a prompt: a merchant's description is written
# for shoppers (up to catalog's 5,000 characters), while the image model reads a few dozen words
# at most; 40 ordinary words are about 50 CLIP tokens, less than one window. The character cap
# bounds a "word" with no spaces in it. Cut, not refused: the shopper trying the garment on
# cannot shorten it, and its first sentence or two describe the garment best anyway.
DESCRIPTION_PROMPT_WORDS = 40
DESCRIPTION_PROMPT_CHARS = 300

# The WebUI's tokens, in the order it tries them: escapes, brackets, a ":weight)" close, runs of
# plain text, and a lone ":" that is only text.
_ATTENTION = re.compile(
    r"""
    \\\( | \\\) | \\\[ | \\] | \\\\ | \\
    | \(
    | \[
    | :\s*([+-]?[.\d]+)\s*\)
    | \)
    | ]
    | [^\\()\[\]:]+
    | :
    """,
    re.X,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
# A word of a database text: anything between whitespace and control characters.
_WORD = re.compile(rf"[^\s{UNSAFE_CHARACTERS}]+")
_LORA_KINDS = ("lora", "lyco")


@dataclass(frozen=True)
class ParsedPrompt:
    """A prompt read as the WebUI reads it.

    ``chunks`` are (text, weight) runs, with ``BREAK_MARKER`` where a ``BREAK`` closes a window;
    ``loras`` are (name, weight) from ``<lora:…>``/``<lyco:…>`` tags, in prompt order;
    ``problems`` are messages about what the WebUI would have refused or mangled.
    """

    chunks: tuple[tuple[str, float], ...]
    loras: tuple[tuple[str, float], ...] = ()
    problems: tuple[str, ...] = ()


def parse_prompt(text: str) -> ParsedPrompt:
    """Read ``text`` with the WebUI's grammar; never raises.

    Extra-network tags (``<name:args>``) are removed first, as the WebUI does; the LoRA ones are
    returned in ``loras``. The rest is parsed like ``parse_prompt_attention``: unbalanced brackets
    apply to the rest of the text, unmatched closers are kept as text, runs of equal weight merge.
    """
    problems: list[str] = []
    stripped, loras = _extract_loras(text, problems)
    chunks = _parse_attention(stripped, problems)
    return ParsedPrompt(chunks=chunks, loras=loras, problems=tuple(dict.fromkeys(problems)))


def validate_prompt(text: str, *, field: str = "prompt") -> ParsedPrompt:
    """``parse_prompt``, raising ``InvalidInputError(field, …)`` where it found problems."""
    parsed = parse_prompt(text)
    if parsed.problems:
        raise InvalidInputError(field, "; ".join(parsed.problems))
    return parsed


def is_break(chunk: tuple[str, float]) -> bool:
    """Whether ``chunk`` is a window break; a ``BREAK`` inside brackets is only a word."""
    return chunk == BREAK_MARKER


def _extract_loras(text: str, problems: list[str]) -> tuple[str, tuple[tuple[str, float], ...]]:
    loras: list[tuple[str, float]] = []

    def take(match: re.Match[str]) -> str:
        if match.group(1) in _LORA_KINDS:
            lora = _lora_from_args(match.group(0), match.group(2), problems)
            if lora is not None:
                loras.append(lora)
        # Every extra-network tag leaves the text, known or not, as in the WebUI.
        return ""

    return _EXTRA_NETWORK.sub(take, text), tuple(loras)


def _lora_from_args(tag: str, args: str, problems: list[str]) -> tuple[str, float] | None:
    """(name, weight) from ``name[:weight[:unet weight]]`` or ``te=``; None when unusable.

    The WebUI's first multiplier is the text encoder's, and the UNet's defaults to it, so it is
    the one weight kept. Where the WebUI's ``float()`` would fail, it loads no LoRA at all.
    """
    positional, named = [], {}
    for item in args.split(":"):
        parts = item.split("=")
        if len(parts) == 2:
            named[parts[0]] = parts[1]
        else:
            positional.append(item)
    if not positional or not positional[0]:
        problems.append(f"{tag} names no LoRA")
        return None
    raw = named.get("te", positional[1] if len(positional) > 1 else "1")
    weight = _finite_float(raw)
    if weight is None:
        problems.append(f"{tag}: LoRA weight {raw!r} is not a finite number")
        return None
    return positional[0], weight


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class _AttentionState:
    """The chunks parsed so far and the positions where open brackets started."""

    def __init__(self, problems: list[str]):
        self.chunks: list[list[Any]] = []
        self.round: list[int] = []
        self.square: list[int] = []
        self.problems = problems

    def multiply_from(self, start: int, multiplier: float) -> None:
        for chunk in self.chunks[start:]:
            chunk[1] = _clamp_weight(chunk[1] * multiplier, self.problems)

    def add_text(self, text: str) -> None:
        for index, part in enumerate(_BREAK.split(text)):
            if index:
                self.chunks.append(list(BREAK_MARKER))
            self.chunks.append([part, 1.0])

    def close_weighted(self, lexeme: str, number: str) -> None:
        weight = _finite_float(number)
        if weight is None:
            # The WebUI's float() raises here and the whole generation fails.
            self.problems.append(f"attention weight {number!r} in {lexeme!r} is not a number")
            weight = ROUND_MULTIPLIER
        self.multiply_from(self.round.pop(), _clamp_weight(weight, self.problems))


def _clamp_weight(weight: float, problems: list[str]) -> float:
    if -WEIGHT_LIMIT <= weight <= WEIGHT_LIMIT:
        return weight
    problems.append(f"attention weight {weight:g} is outside ±{WEIGHT_LIMIT:g}")
    return math.copysign(WEIGHT_LIMIT, weight)


def _parse_attention(text: str, problems: list[str]) -> tuple[tuple[str, float], ...]:
    state = _AttentionState(problems)
    for match in _ATTENTION.finditer(text):
        _read_lexeme(state, match.group(0), match.group(1))
    # Brackets never closed weigh the rest of the prompt, as in the WebUI.
    for start in state.round:
        state.multiply_from(start, ROUND_MULTIPLIER)
    for start in state.square:
        state.multiply_from(start, SQUARE_MULTIPLIER)
    return _merge_equal_weights(state.chunks)


def _read_lexeme(state: _AttentionState, lexeme: str, number: str | None) -> None:
    if lexeme.startswith("\\"):
        state.chunks.append([lexeme[1:], 1.0])  # a lone backslash escapes nothing and vanishes
    elif lexeme == "(":
        state.round.append(len(state.chunks))
    elif lexeme == "[":
        state.square.append(len(state.chunks))
    elif number is not None and state.round:
        state.close_weighted(lexeme, number)
    elif lexeme == ")" and state.round:
        state.multiply_from(state.round.pop(), ROUND_MULTIPLIER)
    elif lexeme == "]" and state.square:
        state.multiply_from(state.square.pop(), SQUARE_MULTIPLIER)
    else:
        state.add_text(lexeme)


def _merge_equal_weights(chunks: list[list[Any]]) -> tuple[tuple[str, float], ...]:
    if not chunks:
        return (("", 1.0),)
    merged = [chunks[0]]
    for text, weight in chunks[1:]:
        if weight == merged[-1][1]:
            merged[-1][0] += text
        else:
            merged.append([text, weight])
    return tuple((text, float(weight)) for text, weight in merged)


# --- token windows -------------------------------------------------------------------------------

Window = list[tuple[int, float]]


class _WindowBuilder:
    """Cuts (token, weight) pairs into windows of CHUNK_LENGTH as the WebUI's ``tokenize_line``."""

    def __init__(self, comma_id: int | None, comma_backtrack: int):
        self.comma_id = comma_id
        self.comma_backtrack = comma_backtrack
        self.windows: list[Window] = []
        self.current: Window = []
        self.last_comma = -1

    def add(self, token: int, weight: float) -> None:
        if token == self.comma_id:
            self.last_comma = len(self.current)
        elif self._comma_is_near_full_end():
            # Words after the comma move to the next window instead of being split across two.
            cut = self.last_comma + 1
            moved = self.current[cut:]
            self.current = self.current[:cut]
            self.close()
            self.current = moved
        if len(self.current) == CHUNK_LENGTH:
            self.close()
        self.current.append((token, weight))

    def _comma_is_near_full_end(self) -> bool:
        return (
            self.comma_backtrack > 0
            and len(self.current) == CHUNK_LENGTH
            and self.last_comma != -1
            and CHUNK_LENGTH - self.last_comma <= self.comma_backtrack
        )

    def close(self) -> None:
        self.windows.append(self.current)
        self.current = []
        self.last_comma = -1

    def finish(self) -> list[Window]:
        if self.current or not self.windows:
            self.close()
        return self.windows


def token_windows(
    parsed: ParsedPrompt,
    tokenize: Callable[[list[str]], Sequence[Sequence[int]]],
    *,
    bos_id: int = CLIP_BOS_ID,
    eos_id: int = CLIP_EOS_ID,
    pad_id: int | None = None,
    comma_id: int | None = CLIP_COMMA_ID,
    comma_backtrack: int = COMMA_BACKTRACK,
    field: str = "prompt",
) -> list[Window]:
    """The prompt's CLIP windows: each BOS + 75 (token id, weight) + EOS, 77 pairs in all.

    ``tokenize`` maps texts to token ids without BOS/EOS. A ``BREAK`` closes the current window;
    a window that would overflow is cut after a comma among its last ``comma_backtrack`` tokens.
    Padding after the EOS is ``pad_id``: the EOS id for SD1.x (the default), 0 for SD2's OpenCLIP.
    An empty prompt gives one window.

    More than ``MAX_PROMPT_TOKENS`` tokens or ``MAX_PROMPT_WINDOWS`` windows is refused with
    ``InvalidInputError(field, …)``; text over ``MAX_PROMPT_CHARS`` characters is refused before
    ``tokenize`` sees any of it.
    """
    texts = [text for text, weight in parsed.chunks if not is_break((text, weight))]
    check_prompt_characters(sum(map(len, texts)), field=field)
    token_lists = list(tokenize(texts) if texts else [])
    count = sum(map(len, token_lists))
    if count > MAX_PROMPT_TOKENS:
        raise InvalidInputError(field, _too_long(count))
    builder = _WindowBuilder(comma_id, comma_backtrack)
    tokens = iter(token_lists)
    for chunk in parsed.chunks:
        if is_break(chunk):
            builder.close()
            continue
        for token in next(tokens):
            builder.add(int(token), chunk[1])
    windows = builder.finish()
    if len(windows) > MAX_PROMPT_WINDOWS:
        # Fewer tokens than the cap, spread over more windows by BREAKs or comma back-tracking.
        raise InvalidInputError(field, _too_long(count, len(windows)))
    pad = eos_id if pad_id is None else pad_id
    return [frame_window(window, bos_id, eos_id, pad) for window in windows]


def check_prompt_characters(length: int, *, field: str = "prompt") -> None:
    """Refuse a prompt ``length`` characters long over ``MAX_PROMPT_CHARS``
    (``InvalidInputError(field, …)``): the cheap part of the token cap, before any parsing or
    tokenizing."""
    if length > MAX_PROMPT_CHARS:
        raise InvalidInputError(
            field,
            f"is {length:,} characters long; at most {MAX_PROMPT_CHARS:,} characters "
            f"and {MAX_PROMPT_TOKENS} tokens are allowed",
        )


def _too_long(tokens: int, windows: int | None = None) -> str:
    spread = f" in {windows} windows of {CHUNK_LENGTH}" if windows is not None else ""
    return (
        f"is {tokens} tokens long{spread}; at most {MAX_PROMPT_TOKENS} tokens "
        f"({MAX_PROMPT_WINDOWS} windows of {CHUNK_LENGTH}) are allowed"
    )


def frame_window(window: Window, bos_id: int, eos_id: int, pad_id: int) -> Window:
    """``window``'s tokens as CLIP reads them: BOS, the tokens, EOS, then padding to 77 pairs."""
    padding = [(pad_id, 1.0)] * (CHUNK_LENGTH - len(window))
    return [(bos_id, 1.0), *window, (eos_id, 1.0), *padding]


# --- prompt builder ------------------------------------------------------------------------------

GARMENT_NOUNS = {"upper": "top", "lower": "bottoms", "dress": "dress", "outer": "jacket"}

MODEL_VOCABULARY: dict[str, dict[str, str]] = {
    "gender_presentation": {"feminine": "woman", "masculine": "man", "androgynous": "person"},
    "age_range": {
        "young_adult": "young",
        "adult": "adult",
        "middle_aged": "middle-aged",
        "senior": "senior",
    },
    "skin_tone": {
        "very_light": "very light skin",
        "light": "light skin",
        "medium": "medium skin",
        "olive": "olive skin",
        "tan": "tan skin",
        "brown": "brown skin",
        "dark": "dark skin",
        "very_dark": "very dark skin",
    },
    "body_type": {
        "slim": "slim build",
        "athletic": "athletic build",
        "average": "average build",
        "curvy": "curvy build",
        "plus_size": "plus-size build",
        "petite": "petite build",
        "tall": "tall build",
    },
}
# Hair is a few words from this list, e.g. "long wavy brown"; "bald" stands alone.
HAIR_WORDS = (
    "short",
    "medium",
    "long",
    "buzzed",
    "straight",
    "wavy",
    "curly",
    "coily",
    "braided",
    "ponytail",
    "bun",
    "black",
    "brown",
    "blonde",
    "red",
    "auburn",
    "grey",
    "white",
)
MODEL_KEYS = (*MODEL_VOCABULARY, "hair")

POSITIVE_STYLE = "professional fashion photograph"
POSITIVE_QUALITY = "soft natural lighting, sharp focus, highly detailed, realistic skin texture"
DEFAULT_SCENE = "plain light grey studio background"
BASE_NEGATIVE = (
    "deformed hands, extra fingers, missing fingers, fused fingers, extra limbs, missing limbs, "
    "bad anatomy, disfigured, distorted face, blurry, lowres, jpeg artifacts, text, watermark, "
    "signature, nsfw, nudity"
)


def build_prompt(
    *,
    category: str,
    colour: str = "",
    material: str = "",
    description: str = "",
    scene: str = "",
    scene_negative: str = "",
    model: dict[str, str] | None = None,
    user_text: str = "",
    user_negative: str = "",
    more_garments: Sequence[tuple[str, str, str]] = (),
    photo: bool = False,
) -> tuple[str, str]:
    """(positive, negative) prompts for a garment worn by a generated model.

    Garment attributes, scene and model attributes come from the database and are made inert:
    brackets and backslashes escaped, ``<…>`` tags and ``BREAK`` defused, so they are plain words
    of weight 1. Model attributes must come from ``MODEL_VOCABULARY``/``HAIR_WORDS``.
    ``more_garments`` are further (category, colour, material) of an outfit, worn together.
    ``photo`` describes a person in a real photo instead (no model, no scene: only the garment
    is painted). ``user_text`` and ``user_negative`` (a person's free text) go through
    ``sanitize_user_prompt`` and are appended; ``BASE_NEGATIVE`` is always in the negative.
    Only the first ``DESCRIPTION_PROMPT_WORDS`` words of ``description`` are used (see
    ``description_words``); everything is on one line.
    """
    garments = [_garment_words(category, colour, material)]
    garments += [_garment_words(*garment) for garment in more_garments]
    wearing = " and ".join(_with_article(garment) for garment in garments)
    if photo:
        subject = [f"photo of a person wearing {wearing}"]
    else:
        subject = [POSITIVE_STYLE, f"{_describe_model(model or {})} wearing {wearing}"]
    setting = [] if photo else [_inert(scene) or DEFAULT_SCENE]
    positive = [
        *subject,
        _inert(description_words(description)),
        *setting,
        POSITIVE_QUALITY,
        sanitize_user_prompt(user_text, field="user_text"),
    ]
    negative = [
        BASE_NEGATIVE,
        _inert(scene_negative),
        sanitize_user_prompt(user_negative, field="user_negative"),
    ]
    return _join(positive), _join(negative)


def build_free_prompt(user_text: str, user_negative: str = "") -> tuple[str, str]:
    """The prompts of an inpaint, where the client's words are the whole prompt.

    The same safety as ``build_prompt``: the words are sanitized (weights clamped, extra-network
    tags dropped; up to ``FREE_TEXT_MAX`` characters, since here they carry the whole subject)
    and ``BASE_NEGATIVE`` is always in the negative.
    """
    positive = sanitize_user_prompt(user_text, field="prompt", limit=FREE_TEXT_MAX)
    negative = sanitize_user_prompt(user_negative, field="negative_prompt", limit=FREE_TEXT_MAX)
    return positive, _join([BASE_NEGATIVE, negative])


def _garment_words(category: str, colour: str, material: str) -> str:
    if category not in GARMENT_NOUNS:
        raise InvalidInputError("category", f"must be one of: {', '.join(CATEGORIES)}")
    return _inert(" ".join(part for part in (colour, material, GARMENT_NOUNS[category]) if part))


def _join(parts: list[str]) -> str:
    return ", ".join(part for part in parts if part.strip())


def _describe_model(model: dict[str, str]) -> str:
    unknown = sorted(set(model) - set(MODEL_KEYS))
    if unknown:
        raise InvalidInputError(
            "model", f"unknown keys {', '.join(unknown)}; allowed: {', '.join(MODEL_KEYS)}"
        )
    words = {key: _model_word(key, value) for key, value in model.items() if value}
    subject = " ".join(
        word
        for word in (words.get("age_range"), words.get("gender_presentation", "fashion model"))
        if word
    )
    details = [words[key] for key in ("skin_tone", "body_type", "hair") if key in words]
    return _with_article(subject) + (f" with {', '.join(details)}" if details else "")


def _with_article(phrase: str) -> str:
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def _model_word(key: str, value: str) -> str:
    if key == "hair":
        return _hair_words(value)
    vocabulary = MODEL_VOCABULARY[key]
    if value not in vocabulary:
        raise InvalidInputError(f"model.{key}", f"must be one of: {', '.join(vocabulary)}")
    return vocabulary[value]


def _hair_words(value: str) -> str:
    words = value.split()
    if words == ["bald"]:
        return "a bald head"
    if not words or any(word not in HAIR_WORDS for word in words):
        raise InvalidInputError(
            "model.hair", f"must be 'bald' or words from: {', '.join(HAIR_WORDS)}"
        )
    return f"{' '.join(words)} hair"


def description_words(text: str) -> str:
    """What of a garment's description goes into a prompt: its first ``DESCRIPTION_PROMPT_WORDS``
    words, at most ``DESCRIPTION_PROMPT_CHARS`` characters, cut at a word boundary (a single
    longer word is cut where the cap falls), on one line.

    Reads no further into ``text`` than those words: a description of megabytes costs no more
    than a short one.
    """
    words = itertools.islice(_WORD.finditer(text), DESCRIPTION_PROMPT_WORDS)
    kept = " ".join(word.group() for word in words)
    if len(kept) <= DESCRIPTION_PROMPT_CHARS:
        return kept
    cut = kept.rfind(" ", 0, DESCRIPTION_PROMPT_CHARS + 1)
    return kept[: cut if cut > 0 else DESCRIPTION_PROMPT_CHARS]


def _inert(text: str) -> str:
    """A database value as plain words of weight 1, on one line (see ``pipelines.text``)."""
    return _escape(" ".join(one_line(text).split()))


def _escape(text: str) -> str:
    """``text`` with nothing left that the parser would read as syntax.

    Angle brackets go so no ``<lora:…>`` tag can form; CLIP's tokenizer lowercases anyway, so
    writing BREAK in lower case changes no embedding.
    """
    text = re.sub(r"[<>]", "", text)
    text = re.sub(r"([\\()\[\]])", r"\\\1", text)
    return text.replace("BREAK", "break")


def sanitize_user_prompt(text: str, *, field: str = "user_text", limit: int = USER_TEXT_MAX) -> str:
    """A person's free prompt text made safe to append to a server-built prompt.

    Longer than ``limit`` characters (default ``USER_TEXT_MAX``) is refused
    (``InvalidInputError`` naming ``field``). Line breaks and other control characters, with the
    whitespace around them, become one space (``pipelines.text.one_line``): a newline in a prompt
    would start a line of its own in the picture's infotext, such as a forged "Negative prompt:".
    The text is parsed as the WebUI would and written back in flat form, ``(words:weight)``, with
    every effective weight, nesting included, clamped to ``USER_WEIGHT_RANGE``; ``<lora:…>`` and
    other extra-network tags are dropped (people may not load models through a prompt) and
    ``BREAK`` is kept. The result is balanced, so it cannot reweigh what comes before it.
    """
    if len(text) > limit:
        raise InvalidInputError(
            field, f"is {len(text)} characters long; at most {limit} are allowed"
        )
    low, high = USER_WEIGHT_RANGE
    pieces = []
    for chunk_text, weight in parse_prompt(one_line(text)).chunks:
        if is_break((chunk_text, weight)):
            pieces.append(" BREAK ")
        elif chunk_text:
            pieces.append(_weighted(_escape(chunk_text), min(high, max(low, weight))))
    return "".join(pieces).strip()


def _weighted(text: str, weight: float) -> str:
    written = f"{weight:.4f}".rstrip("0").rstrip(".")
    return text if written == "1" else f"({text}:{written})"
