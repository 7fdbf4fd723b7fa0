"""Prompts through a checkpoint's CLIP tokenizer and text encoder: token windows and the weighted
embeddings, as the WebUI's ``modules/sd_hijack_clip.py`` makes them ("Original" emphasis, whose
mean is restored).

The prompt is parsed and capped by ``pipelines.prompts``; this module adds what needs the
transformers tokenizer or text encoder. torch is imported inside the function that encodes.
"""

from typing import Any

from pipelines.errors import InvalidInputError
from pipelines.prompts import (
    ParsedPrompt,
    Window,
    check_prompt_characters,
    frame_window,
    parse_prompt,
    token_windows,
)


def encode_prompt(
    parsed: ParsedPrompt,
    tokenizer: Any,
    text_encoder: Any,
    *,
    clip_skip: int = 1,
    min_windows: int = 1,
    field: str = "prompt",
) -> Any:
    """The prompt's weighted CLIP embedding, a tensor of shape (1, 77 × windows, hidden).

    Each window is encoded by ``text_encoder`` (a transformers ``CLIPTextModel``), its token
    embeddings multiplied by their weights and rescaled so the window's mean is what it was
    unweighted, as the WebUI's "Original" emphasis does. ``clip_skip`` > 1 takes that many layers
    from the end and applies the final layer norm. Empty windows are appended up to
    ``min_windows``, as the WebUI pads the shorter of cond and uncond. A prompt over the token
    cap is refused naming ``field`` before anything is encoded (see ``token_windows``).
    """
    _check_clip_skip(clip_skip, text_encoder)
    if min_windows < 1:
        raise InvalidInputError("min_windows", f"must be at least 1, got {min_windows}")
    windows = tokenizer_windows(parsed, tokenizer, field=field)
    windows += [_empty_window(tokenizer)] * (min_windows - len(windows))
    return _encode_windows(windows, text_encoder, clip_skip)


def encode_prompt_pair(
    positive: ParsedPrompt,
    negative: ParsedPrompt,
    tokenizer: Any,
    text_encoder: Any,
    *,
    clip_skip: int = 1,
) -> tuple[Any, Any]:
    """(cond, uncond) embeddings with the same number of windows, as diffusers needs them.

    Both prompts are cut into windows, and refused over the token cap (naming "prompt" or
    "negative_prompt"), before either is encoded.
    """
    _check_clip_skip(clip_skip, text_encoder)
    cond_windows = tokenizer_windows(positive, tokenizer, field="prompt")
    uncond_windows = tokenizer_windows(negative, tokenizer, field="negative_prompt")
    count = max(len(cond_windows), len(uncond_windows))
    empty = _empty_window(tokenizer)
    return tuple(
        _encode_windows(windows + [empty] * (count - len(windows)), text_encoder, clip_skip)
        for windows in (cond_windows, uncond_windows)
    )


def tokenizer_windows(
    parsed: ParsedPrompt, tokenizer: Any, *, field: str = "prompt"
) -> list[Window]:
    """``token_windows`` with the ids and tokenization of a transformers ``CLIPTokenizer``."""

    def tokenize(texts: list[str]) -> list[list[int]]:
        # Long texts are the point here; the "longer than 77" warning is noise.
        encoded = tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)
        return encoded["input_ids"]

    return token_windows(parsed, tokenize, field=field, **_special_ids(tokenizer))


def check_prompt_length(text: str, tokenizer: Any, *, field: str = "prompt") -> int:
    """How many CLIP windows ``text`` takes; over the cap, ``InvalidInputError(field, …)``.

    Cheap whatever ``text`` is: over ``MAX_PROMPT_CHARS`` characters it is refused by its length
    before it is parsed or tokenized, so a worker never spends longer on a prompt than on
    tokenizing that many characters.
    """
    check_prompt_characters(len(text), field=field)
    return len(tokenizer_windows(parse_prompt(text), tokenizer, field=field))


def _special_ids(tokenizer: Any) -> dict[str, Any]:
    pad = tokenizer.pad_token_id
    return {
        "bos_id": tokenizer.bos_token_id,
        "eos_id": tokenizer.eos_token_id,
        "pad_id": tokenizer.eos_token_id if pad is None else pad,
        "comma_id": tokenizer.get_vocab().get(",</w>"),
    }


def _empty_window(tokenizer: Any) -> Window:
    ids = _special_ids(tokenizer)
    return frame_window([], ids["bos_id"], ids["eos_id"], ids["pad_id"])


def _check_clip_skip(clip_skip: int, text_encoder: Any) -> None:
    layers = text_encoder.config.num_hidden_layers
    if not isinstance(clip_skip, int) or not 1 <= clip_skip <= layers:
        raise InvalidInputError("clip_skip", f"must be an integer from 1 to {layers}")


def _final_layer_norm(text_encoder: Any) -> Any:
    # transformers 5 puts it on CLIPTextModel itself; 4.x had it under ``text_model``.
    return getattr(text_encoder, "text_model", text_encoder).final_layer_norm


def _encode_windows(
    windows: list[Window], text_encoder: Any, clip_skip: int, *, final_norm: bool = True
) -> Any:
    """The windows' weighted hidden states: the last layer, or with ``clip_skip`` > 1 that
    many from the end, through the final layer norm as SD 1.5's WebUI does (SDXL's skip it)."""
    import torch

    device = text_encoder.device
    ids = torch.tensor([[token for token, _ in w] for w in windows], device=device)
    weights = torch.tensor([[weight for _, weight in w] for w in windows], device=device)
    with torch.no_grad():
        output = text_encoder(input_ids=ids, output_hidden_states=clip_skip > 1)
        if clip_skip > 1:
            hidden = output.hidden_states[-clip_skip]
            if final_norm:
                hidden = _final_layer_norm(text_encoder)(hidden)
        else:
            hidden = output.last_hidden_state
    # Weighting in float32: a half-precision mean drifts enough to shift the rescale visibly.
    z = hidden.float()
    original_mean = z.mean(dim=(1, 2), keepdim=True)
    z = z * weights.unsqueeze(-1)
    new_mean = z.mean(dim=(1, 2), keepdim=True)
    # All-zero weights leave nothing to rescale; the WebUI would divide by zero.
    scale = torch.where(new_mean == 0, torch.ones_like(new_mean), original_mean / new_mean)
    z = z * scale
    return z.reshape(1, -1, z.shape[-1]).to(hidden.dtype)


def encode_prompt_pair_xl(
    positive: ParsedPrompt,
    negative: ParsedPrompt,
    tokenizers: tuple[Any, Any],
    text_encoders: tuple[Any, Any],
) -> tuple[Any, Any, Any, Any]:
    """SDXL's (cond, uncond, pooled cond, pooled uncond), as the WebUI makes them.

    Each prompt is cut into windows by each tokenizer (CLIP-L's, and bigG's, which pads with
    ``!``); every window is encoded by both text encoders, each taking its penultimate layer
    without the final layer norm, weighted with the mean restored, and the two are joined along
    the features (768 + 1280 = 2048). The pooled embedding is bigG's projection of the first
    window. cond and uncond get the same number of windows, as diffusers needs.
    """
    windows = [
        [
            tokenizer_windows(prompt, tokenizer, field=field)
            for prompt, field in ((positive, "prompt"), (negative, "negative_prompt"))
        ]
        for tokenizer in tokenizers
    ]
    count = max(len(found) for pair in windows for found in pair)
    hidden = [
        [
            _encode_windows(_padded(found, count, tokenizer), encoder, 2, final_norm=False)
            for found in pair
        ]
        for pair, tokenizer, encoder in zip(windows, tokenizers, text_encoders, strict=True)
    ]
    import torch

    cond, uncond = (torch.cat([hidden[0][i], hidden[1][i]], dim=-1) for i in (0, 1))
    first = [found[0] if found else _empty_window(tokenizers[1]) for found in windows[1]]
    return cond, uncond, _pooled(first[0], text_encoders[1]), _pooled(first[1], text_encoders[1])


def _padded(windows: list[Window], count: int, tokenizer: Any) -> list[Window]:
    return windows + [_empty_window(tokenizer)] * (count - len(windows))


def _pooled(window: Window, text_encoder: Any) -> Any:
    """bigG's projected pooled embedding of one window (the first, as the WebUI takes it)."""
    import torch

    ids = torch.tensor([[token for token, _ in window]], device=text_encoder.device)
    with torch.no_grad():
        return text_encoder(input_ids=ids).text_embeds
