"""The WebUI prompt grammar, its token windows, weighted CLIP embeddings and the prompt builder."""

import itertools
import json
import math
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.errors import InvalidInputError
from pipelines.prompt_encoding import (
    check_prompt_length,
    encode_prompt,
    encode_prompt_pair,
    tokenizer_windows,
)
from pipelines.prompts import (
    BASE_NEGATIVE,
    BREAK_MARKER,
    DESCRIPTION_PROMPT_CHARS,
    DESCRIPTION_PROMPT_WORDS,
    MAX_PROMPT_CHARS,
    MAX_PROMPT_TOKENS,
    MAX_PROMPT_WINDOWS,
    USER_TEXT_MAX,
    ParsedPrompt,
    build_free_prompt,
    build_prompt,
    description_words,
    is_break,
    parse_prompt,
    sanitize_user_prompt,
    token_windows,
    validate_prompt,
)
from pipelines.text import has_unsafe

# --- parsing: the WebUI's own doctest examples ---------------------------------------------------

WEBUI_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    (
        "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
        [
            ("a ", 1.0),
            ("house", 1.5730000000000004),
            (" ", 1.1),
            ("on", 1.0),
            (" a ", 1.1),
            ("hill", 0.55),
            (", sun, ", 1.1),
            ("sky", 1.4641000000000006),
            (".", 1.1),
        ],
    ),
]


def assert_chunks(parsed: ParsedPrompt, expected: list[tuple[str, float]]) -> None:
    assert [text for text, _ in parsed.chunks] == [text for text, _ in expected]
    assert [weight for _, weight in parsed.chunks] == pytest.approx([w for _, w in expected])


@pytest.mark.parametrize(("text", "expected"), WEBUI_EXAMPLES)
def test_webui_docstring_examples(text, expected):
    assert_chunks(parse_prompt(text), expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("", 1.0)]),
        ("()", [("", 1.0)]),
        ("((x))", [("x", 1.21)]),
        ("[x]", [("x", 1 / 1.1)]),
        ("[[x]]", [("x", 1 / 1.21)]),
        ("(x:1.5)", [("x", 1.5)]),
        ("(x: 1.5 )", [("x", 1.5)]),  # the WebUI allows spaces around the number
        ("((x:2))", [("x", 2.2)]),
        ("(x:-1)", [("x", -1.0)]),
        ("a\\\\b", [("a\\b", 1.0)]),
        ("a\\b", [("ab", 1.0)]),  # a backslash before an ordinary character vanishes
        ("a) b] c", [("a) b] c", 1.0)]),  # closers with nothing open stay text
        ("a:1.5) b", [("a:1.5) b", 1.0)]),
        ("([a)]", [("a", 1.0)]),  # ×1.1 then ÷1.1: the two kinds nest independently
        ("[a", [("a", 1 / 1.1)]),
        ("a (b:2", [("a ", 1.0), ("b:2", 1.1)]),
        ("a:b", [("a:b", 1.0)]),
    ],
)
def test_attention_syntax(text, expected):
    assert_chunks(parse_prompt(text), expected)


def test_break_is_a_marker_chunk():
    parsed = parse_prompt("a red top BREAK blue jeans")
    assert parsed.chunks == (("a red top", 1.0), BREAK_MARKER, ("blue jeans", 1.0))
    assert is_break(parsed.chunks[1])


def test_break_must_be_a_whole_word():
    assert parse_prompt("BREAKFAST aBREAK").chunks == (("BREAKFAST aBREAK", 1.0),)
    assert parse_prompt("a,BREAK,b").chunks == (("a,", 1.0), BREAK_MARKER, (",b", 1.0))


def test_break_inside_brackets_is_only_a_word():
    parsed = parse_prompt("(a BREAK b)")
    assert [weight for _, weight in parsed.chunks] == pytest.approx([1.1, -1.1, 1.1])
    assert not any(is_break(chunk) for chunk in parsed.chunks)


def test_lora_tags_leave_the_text():
    parsed = parse_prompt("a <lora:denim:0.8>shirt, <lyco:style>(blue:1.2)<lora:x:0.5:0.7>")
    assert parsed.loras == (("denim", 0.8), ("style", 1.0), ("x", 0.5))
    assert_chunks(parsed, [("a shirt, ", 1.0), ("blue", 1.2)])
    assert parsed.problems == ()


def test_lora_named_text_encoder_weight():
    assert parse_prompt("<lora:x:te=0.3:unet=0.9>").loras == (("x", 0.3),)


def test_other_extra_networks_are_removed_but_not_loras():
    parsed = parse_prompt("a <hypernet:anime:1> b")
    assert parsed.loras == ()
    assert parsed.chunks == (("a  b", 1.0),)


@pytest.mark.parametrize("tag", ["<lora:x:abc>", "<lora:x:nan>", "<lora:x:inf>", "<lora::1>"])
def test_unusable_lora_is_not_loaded_and_reported(tag):
    parsed = parse_prompt(f"a {tag} b")
    assert parsed.loras == ()
    assert parsed.chunks == (("a  b", 1.0),)
    assert len(parsed.problems) == 1
    with pytest.raises(InvalidInputError) as error:
        validate_prompt(f"a {tag} b", field="negative_prompt")
    assert error.value.argument == "negative_prompt"


def test_weight_that_is_not_a_number_is_reported_not_raised():
    parsed = parse_prompt("(a:1.2.3) b")
    assert_chunks(parsed, [("a", 1.1), (" b", 1.0)])
    assert "1.2.3" in parsed.problems[0]


def test_overflowing_weights_are_clamped_and_reported():
    parsed = parse_prompt("(((x:" + "9" * 400 + ")))")
    assert all(math.isfinite(weight) for _, weight in parsed.chunks)
    assert parsed.problems


def test_validate_prompt_returns_the_parse_when_fine():
    assert validate_prompt("a (b:1.2) <lora:c:0.5>").loras == (("c", 0.5),)


# --- parsing: properties ------------------------------------------------------------------------


def is_subsequence(needle: str, haystack: str) -> bool:
    characters = iter(haystack)
    return all(character in characters for character in needle)


def plain_text(parsed: ParsedPrompt) -> str:
    return "".join(text for text, weight in parsed.chunks if not is_break((text, weight)))


@settings(max_examples=300)
@given(st.text())
def test_parse_never_raises_and_weights_are_finite(text):
    parsed = parse_prompt(text)
    assert parsed.chunks
    assert all(math.isfinite(weight) for _, weight in parsed.chunks)
    assert all(math.isfinite(weight) for _, weight in parsed.loras)
    # Every character out comes from the input, in order (escapes resolve to their character).
    assert is_subsequence(plain_text(parsed), re.sub(r"<(\w+):([^>]+)>", "", text))


SYNTAX = set("()[]\\:.+-0123456789") | {" ", "\n", "\t"}


@settings(max_examples=300)
@given(st.text(alphabet="ab é,()[]\\:.1 \n"))
def test_parse_keeps_every_ordinary_character_in_order(text):
    # No "<" and no BREAK can occur here, so only syntax characters may disappear.
    def ordinary(value: str) -> str:
        return "".join(character for character in value if character not in SYNTAX)

    assert ordinary(plain_text(parse_prompt(text))) == ordinary(text)


@settings(max_examples=200)
@given(st.lists(st.sampled_from(["red", " ", ",", "(", ")", "[", "]", ":1.3)", "BREAK"])))
def test_merged_chunks_never_have_equal_neighbours(pieces):
    chunks = parse_prompt("".join(pieces)).chunks
    assert all(a[1] != b[1] for a, b in itertools.pairwise(chunks))


# --- token windows (a fake tokenizer: "w<n>" is token 100 + n, "," is the comma) -----------------

BOS, EOS, PAD, COMMA = 1, 2, 0, 3


def fake_tokenize(texts: list[str]) -> list[list[int]]:
    return [
        [COMMA if word == "," else 100 + int(word[1:]) for word in re.findall(r"w\d+|,", text)]
        for text in texts
    ]


def words(count: int, start: int = 0) -> str:
    return " ".join(f"w{index}" for index in range(start, start + count))


def windows(text: str, **kwargs) -> list[list[tuple[int, float]]]:
    ids = {"bos_id": BOS, "eos_id": EOS, "comma_id": COMMA, **kwargs}
    return token_windows(parse_prompt(text), fake_tokenize, **ids)


def ids(window: list[tuple[int, float]]) -> list[int]:
    return [token for token, _ in window]


def test_empty_prompt_is_one_window_of_bos_and_eos():
    (window,) = windows("")
    assert window == [(BOS, 1.0)] + [(EOS, 1.0)] * 76


def test_window_frame_and_weights():
    (window,) = windows("w1 (w2:1.5) [w3]")
    assert len(window) == 77
    assert ids(window)[:5] == [BOS, 101, 102, 103, EOS]
    assert [weight for _, weight in window[:5]] == pytest.approx([1.0, 1.0, 1.5, 1 / 1.1, 1.0])
    assert ids(window)[5:] == [EOS] * 72


def test_pad_id_follows_the_first_eos():
    (window,) = windows("w1", pad_id=PAD)
    assert ids(window)[:3] == [BOS, 101, EOS]
    assert ids(window)[3:] == [PAD] * 74


@pytest.mark.parametrize(("count", "expected"), [(74, 1), (75, 1), (76, 2), (150, 2), (151, 3)])
def test_75_tokens_per_window(count, expected):
    result = windows(words(count))
    assert len(result) == expected
    assert all(len(window) == 77 for window in result)
    content = [token for window in result for token in ids(window) if token >= 100]
    assert content == [100 + index for index in range(count)]


def test_break_closes_the_window_and_pads_it():
    first, second = windows("w0 w1 BREAK w2")
    assert ids(first)[:4] == [BOS, 100, 101, EOS]
    assert ids(second)[:3] == [BOS, 102, EOS]


def test_break_first_gives_an_empty_window_as_in_the_webui():
    first, second = windows("BREAK w0")
    assert ids(first) == [BOS] + [EOS] * 76
    assert ids(second)[:3] == [BOS, 100, EOS]


def test_break_at_the_end_adds_no_window():
    assert len(windows("w0 BREAK")) == 1


def test_overflow_cuts_after_a_recent_comma():
    first, second = windows(f"{words(70)} , {words(10, start=70)}")
    assert ids(first)[1:72] == [*range(100, 170), COMMA]
    assert ids(first)[72:] == [EOS] * 5
    assert ids(second)[1:11] == list(range(170, 180))


def test_overflow_ignores_a_comma_too_far_back():
    first, second = windows(f"{words(50)} , {words(30, start=50)}")
    assert ids(first)[-2] == 100 + 73  # a hard cut at 75 tokens
    assert ids(second)[1] == 174


def test_comma_backtrack_can_be_turned_off():
    first, _ = windows(f"{words(70)} , {words(10, start=70)}", comma_backtrack=0)
    assert ids(first)[-2] == 173


# --- embeddings with a tiny CLIP ------------------------------------------------------------------


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte: the alphabet of CLIP's byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    extra = iter(range(256, 512))
    return [chr(byte) if byte in printable else chr(next(extra)) for byte in range(256)]


MERGES = ["d r", "r e", "re d</w>", "dr e", "dre s", "dres s</w>", "t h", "th e</w>"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A CLIP tokenizer that can spell any text, from files, and a 3-layer random text model."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    symbols = byte_symbols()
    tokens = symbols + [f"{symbol}</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    folder = tmp_path_factory.mktemp("clip-tokenizer")
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=77)
    torch.manual_seed(0)
    config = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        vocab_size=len(vocab),
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    return tokenizer, CLIPTextModel(config).eval()


def plain_encoding(clip, text: str):
    import torch

    tokenizer, encoder = clip
    ids = tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        return encoder(input_ids=ids).last_hidden_state


def test_tiny_tokenizer_spells_any_text(clip):
    tokenizer, _ = clip
    (ids,) = tokenizer(["a red dress, ümlaut 42!"], add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_tokens_to_ids("red</w>") in ids


def test_unweighted_prompt_equals_the_plain_encoder_output(clip):
    import torch

    tokenizer, encoder = clip
    z = encode_prompt(parse_prompt("a red dress, the hill"), tokenizer, encoder)
    assert z.shape == (1, 77, 32)
    torch.testing.assert_close(z, plain_encoding(clip, "a red dress, the hill"))


def test_weights_scale_tokens_and_the_mean_is_restored(clip):
    import torch

    tokenizer, encoder = clip
    plain = plain_encoding(clip, "a red dress")
    weighted = encode_prompt(parse_prompt("a (red:1.5) dress"), tokenizer, encoder)
    red = 1 + len(tokenizer(["a "], add_special_tokens=False)["input_ids"][0])
    multipliers = torch.ones(77)
    multipliers[red] = 1.5
    scaled = plain * multipliers[None, :, None]
    expected = scaled * (plain.mean() / scaled.mean())
    torch.testing.assert_close(weighted, expected)
    torch.testing.assert_close(weighted.mean(), plain.mean())
    assert not torch.allclose(weighted[0, red], plain[0, red])


def test_a_100_word_prompt_takes_two_windows(clip):
    tokenizer, encoder = clip
    prompt = " ".join(["the", "red", "dress", "a"] * 25)  # one token per word
    z = encode_prompt(parse_prompt(prompt), tokenizer, encoder)
    assert z.shape == (1, 154, 32)


def test_break_forces_a_new_window(clip):
    import torch

    tokenizer, encoder = clip
    z = encode_prompt(parse_prompt("a red BREAK dress"), tokenizer, encoder)
    assert z.shape == (1, 154, 32)
    torch.testing.assert_close(z[:, :77], plain_encoding(clip, "a red"))
    torch.testing.assert_close(z[:, 77:], plain_encoding(clip, "dress"))


def test_clip_skip_takes_an_earlier_layer_through_the_final_norm(clip):
    import torch

    tokenizer, encoder = clip
    parsed = parse_prompt("a red dress")
    last = encode_prompt(parsed, tokenizer, encoder)
    skipped = encode_prompt(parsed, tokenizer, encoder, clip_skip=2)
    assert not torch.allclose(last, skipped)
    ids = tokenizer("a red dress", padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(input_ids=ids.input_ids, output_hidden_states=True).hidden_states[-2]
        expected = getattr(encoder, "text_model", encoder).final_layer_norm(hidden)
    torch.testing.assert_close(skipped, expected)


@pytest.mark.parametrize("clip_skip", [0, 4, 1.5])
def test_clip_skip_out_of_range_is_refused(clip, clip_skip):
    tokenizer, encoder = clip
    with pytest.raises(InvalidInputError) as error:
        encode_prompt(parse_prompt("a"), tokenizer, encoder, clip_skip=clip_skip)
    assert error.value.argument == "clip_skip"


def test_min_windows_pads_with_the_empty_prompt(clip):
    import torch

    tokenizer, encoder = clip
    z = encode_prompt(parse_prompt("a red dress"), tokenizer, encoder, min_windows=3)
    assert z.shape == (1, 231, 32)
    empty = encode_prompt(parse_prompt(""), tokenizer, encoder)
    torch.testing.assert_close(z[:, 77:154], empty)
    torch.testing.assert_close(z[:, 154:], empty)


def test_pair_has_the_same_number_of_windows(clip):
    import torch

    tokenizer, encoder = clip
    positive = parse_prompt("a red BREAK dress BREAK the hill")
    cond, uncond = encode_prompt_pair(positive, parse_prompt("blurry"), tokenizer, encoder)
    assert cond.shape == uncond.shape == (1, 231, 32)
    torch.testing.assert_close(uncond[:, :77], plain_encoding(clip, "blurry"))


def test_tokenizer_windows_use_the_tokenizers_ids(clip):
    tokenizer, _ = clip
    (window,) = tokenizer_windows(parse_prompt("a, red"), tokenizer)
    assert window[0][0] == tokenizer.bos_token_id
    assert tokenizer.convert_tokens_to_ids(",</w>") in [token for token, _ in window]
    assert window[-1][0] == tokenizer.eos_token_id


def test_importing_prompts_does_not_import_torch():
    code = "import sys, pipelines.prompts; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- the prompt builder ---------------------------------------------------------------------------


def test_build_prompt_describes_garment_model_and_scene():
    positive, negative = build_prompt(
        category="dress",
        colour="emerald green",
        material="silk",
        description="wrap dress with a tie belt",
        scene="rooftop terrace at sunset",
        model={
            "gender_presentation": "feminine",
            "age_range": "adult",
            "skin_tone": "brown",
            "body_type": "curvy",
            "hair": "long curly black",
        },
    )
    assert "an adult woman with brown skin, curvy build, long curly black hair" in positive
    assert "wearing an emerald green silk dress" in positive
    assert "wrap dress with a tie belt" in positive
    assert "rooftop terrace at sunset" in positive
    assert negative == BASE_NEGATIVE
    assert parse_prompt(positive).chunks == ((positive, 1.0),)


def test_build_prompt_without_model_or_scene():
    positive, _ = build_prompt(category="upper")
    assert "a fashion model wearing a top" in positive
    assert "studio" in positive


@pytest.mark.parametrize(
    ("kwargs", "field", "listed"),
    [
        ({"category": "hat"}, "category", "upper"),
        ({"model": {"skin_tone": "green"}}, "model.skin_tone", "very_light"),
        ({"model": {"hair": "long purple"}}, "model.hair", "blonde"),
        ({"model": {"eye_colour": "blue"}}, "model", "gender_presentation"),
        ({"model": {"age_range": "child"}}, "model.age_range", "young_adult"),
    ],
)
def test_build_prompt_refuses_values_outside_the_vocabulary(kwargs, field, listed):
    with pytest.raises(InvalidInputError) as error:
        build_prompt(**{"category": "upper", **kwargs})
    assert error.value.argument == field
    assert listed in str(error.value)


def test_database_attributes_cannot_inject_syntax():
    positive, _ = build_prompt(
        category="upper",
        colour="(red:9)",
        material="[cotton] \\",
        description="<lora:evil:1> shirt BREAK (((x)))\n#comment",
        scene="beach:2)",
    )
    parsed = parse_prompt(positive)
    assert parsed.loras == ()
    assert all(weight == 1.0 for _, weight in parsed.chunks)
    assert "(red:9)" in plain_text(parsed)


def test_user_text_is_appended_with_weights_clamped_and_loras_removed():
    positive, negative = build_prompt(
        category="upper",
        user_text="(glossy:5), <lora:other:1>((((((((shine:2))))))))",
        user_negative="(ugly:-3) BREAK blurry",
    )
    assert positive.endswith(", (glossy:2), (shine:2)")
    assert negative == f"{BASE_NEGATIVE}, (ugly:0) BREAK blurry"
    assert parse_prompt(positive).loras == ()


def test_user_text_over_the_limit_is_refused_naming_the_field():
    with pytest.raises(InvalidInputError) as error:
        build_prompt(category="upper", user_negative="x" * (USER_TEXT_MAX + 1))
    assert error.value.argument == "user_negative"
    build_prompt(category="upper", user_text="x" * USER_TEXT_MAX)


@settings(max_examples=300)
@given(st.text(max_size=USER_TEXT_MAX), st.text())
def test_no_input_reaches_past_its_place_in_the_prompt(user_text, description):
    positive, _ = build_prompt(category="outer", description=description, user_text=user_text)
    parsed = parse_prompt(positive)
    assert parsed.loras == ()
    assert all(is_break(chunk) or 0.0 <= chunk[1] <= 2.0 for chunk in parsed.chunks)
    # The server-built part keeps weight 1, whatever the user's text does after it.
    base, _ = build_prompt(category="outer", description=description)
    ((base_text, base_weight),) = parse_prompt(base).chunks
    assert base_weight == 1.0
    assert parsed.chunks[0][1] == 1.0
    assert parsed.chunks[0][0].startswith(base_text)


def per_character(parsed: ParsedPrompt) -> list[tuple[str, float]]:
    characters = []
    for text, weight in parsed.chunks:
        if is_break((text, weight)):
            characters.append(("BREAK", 0.0))
        else:
            characters += [(character, weight) for character in text if not character.isspace()]
    return characters


@settings(max_examples=300)
@given(st.text(alphabet="ab<>:().[]\\1 ", max_size=USER_TEXT_MAX))
def test_sanitised_text_means_what_the_user_wrote_within_the_clamp(text):
    expected = [
        (character, min(2.0, max(0.0, weight)))
        for character, weight in per_character(parse_prompt(text))
        if character not in "<>"
    ]
    actual = per_character(parse_prompt(sanitize_user_prompt(text)))
    assert [character for character, _ in actual] == [character for character, _ in expected]
    assert [weight for _, weight in actual] == pytest.approx(
        [weight for _, weight in expected], abs=1e-3
    )


# --- one line: no person's or database's text can break a prompt's line --------------------------

LINE_BREAKERS = [
    "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
]  # fmt: skip
OTHER_CONTROLS = ["\x00", "\x07", "\x1b", "\t", "\x7f", "\x9b", "\u202e", "\u2067", "\ud800"]


def test_a_forged_negative_prompt_in_user_text_stays_on_the_prompt_line():
    text = "blue\nNegative prompt: forged negative"
    assert sanitize_user_prompt(text) == "blue Negative prompt: forged negative"
    positive, negative = build_prompt(category="upper", user_text=text)
    assert "\n" not in positive and "forged" not in negative
    free, _ = build_free_prompt(text)
    assert free == "blue Negative prompt: forged negative"


@pytest.mark.parametrize("character", LINE_BREAKERS + OTHER_CONTROLS)
def test_user_text_loses_control_characters_and_their_run_becomes_one_space(character):
    assert sanitize_user_prompt(f"red {character}{character} (silk:1.2)") == "red (silk:1.2)"
    # Runs of plain spaces are the person's own and stay as written.
    assert sanitize_user_prompt(f"red   silk{character}dress") == "red   silk dress"


# Line breaks and tabs in database text were already whitespace to the builder.
@pytest.mark.parametrize("character", [c for c in OTHER_CONTROLS if c != "\t"])
def test_database_text_loses_control_characters(character):
    positive, negative = build_prompt(
        category="upper",
        colour=f"navy{character}blue",
        material=f"linen{character}",
        description=f"soft\n{character}Negative prompt: forged",
        scene=f"beach{character}sunset",
        scene_negative=f"crowds{character}litter",
    )
    assert not has_unsafe(positive) and not has_unsafe(negative)
    assert "navy blue linen top" in positive and "beach sunset" in positive
    assert "soft Negative prompt: forged" in positive and "crowds litter" in negative


@settings(max_examples=300)
@given(st.text(max_size=USER_TEXT_MAX), st.text(max_size=400))
def test_no_built_prompt_holds_a_control_character(user_text, description):
    positive, negative = build_prompt(
        category="dress", description=description, user_text=user_text, user_negative=user_text
    )
    assert not has_unsafe(positive) and not has_unsafe(negative)


# --- a description reaches a prompt as its first words -------------------------------------------


def numbered_words(count: int) -> str:
    return " ".join(f"w{index}" for index in range(count))


def test_only_the_first_words_of_a_description_reach_the_prompt():
    positive, _ = build_prompt(category="upper", description=numbered_words(1000))
    last = DESCRIPTION_PROMPT_WORDS - 1
    assert f"w{last}," in positive and f"w{last + 1}" not in positive


def test_a_description_of_megabytes_builds_a_prompt_of_a_few_hundred_characters():
    huge = "soft cotton jersey " * 110_000  # 2 MB
    positive, _ = build_prompt(category="upper", description=huge)
    assert len(positive) < 600
    assert description_words(huge) == " ".join(huge.split()[:DESCRIPTION_PROMPT_WORDS])


def test_the_description_is_cut_at_a_word_boundary_within_its_character_cap():
    long_words = " ".join(f"{index:03d}" + "x" * 9 for index in range(40))  # 40 × 12 characters
    kept = description_words(long_words)
    assert len(kept) <= DESCRIPTION_PROMPT_CHARS
    assert long_words.startswith(kept + " ")
    one_word = "x" * 5000
    assert description_words(one_word) == "x" * DESCRIPTION_PROMPT_CHARS


def test_description_words_stop_at_control_characters():
    assert description_words("soft\x00cotton\u2028tee\u202e!") == "soft cotton tee !"


# --- the token cap -------------------------------------------------------------------------------


def test_a_prompt_of_the_cap_fits_and_one_token_more_is_refused():
    assert len(windows(words(MAX_PROMPT_TOKENS), comma_backtrack=0)) == MAX_PROMPT_WINDOWS
    with pytest.raises(InvalidInputError) as caught:
        windows(words(MAX_PROMPT_TOKENS + 1))
    assert caught.value.argument == "prompt"
    assert f"{MAX_PROMPT_TOKENS + 1} tokens" in caught.value.message
    assert f"at most {MAX_PROMPT_TOKENS} tokens" in caught.value.message


def test_breaks_cannot_spread_a_short_prompt_over_more_windows():
    text = " BREAK ".join(f"w{index}" for index in range(MAX_PROMPT_WINDOWS + 1))
    with pytest.raises(InvalidInputError) as caught:
        windows(text)
    assert f"in {MAX_PROMPT_WINDOWS + 1} windows" in caught.value.message


def test_the_field_is_named_by_the_caller():
    with pytest.raises(InvalidInputError) as caught:
        windows(words(MAX_PROMPT_TOKENS + 1), field="negative_prompt")
    assert caught.value.argument == "negative_prompt"


def test_a_prompt_of_megabytes_is_refused_before_the_tokenizer_sees_it():
    seen: list[int] = []

    def recording(texts: list[str]) -> list[list[int]]:
        seen.append(sum(map(len, texts)))
        return fake_tokenize(texts)

    huge = words(400_000)  # about 3 MB
    with pytest.raises(InvalidInputError) as caught:
        token_windows(parse_prompt(huge), recording, bos_id=BOS, eos_id=EOS, comma_id=COMMA)
    assert caught.value.argument == "prompt" and "characters" in caught.value.message
    assert seen == []


class RecordingTokenizer:
    """A transformers tokenizer that notes how many characters each call was given."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.seen: list[int] = []

    def __call__(self, texts, **kwargs):
        self.seen.append(sum(map(len, texts)))
        return self.tokenizer(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


class EncoderThatMustNotRun:
    def __init__(self, encoder):
        self.config = encoder.config

    def __call__(self, *args, **kwargs):
        raise AssertionError("the text encoder ran on a prompt over the cap")


def test_check_prompt_length_is_cheap_on_any_input(clip):
    tokenizer = RecordingTokenizer(clip[0])
    with pytest.raises(InvalidInputError) as caught:
        check_prompt_length("red silk dress, " * 200_000, tokenizer, field="negative_prompt")
    assert caught.value.argument == "negative_prompt" and tokenizer.seen == []

    # Within the character bound, over the token cap: counted, on bounded input, and refused.
    with pytest.raises(InvalidInputError) as caught:
        check_prompt_length("a, " * MAX_PROMPT_TOKENS, tokenizer)
    assert caught.value.argument == "prompt" and "tokens" in caught.value.message
    assert tokenizer.seen and max(tokenizer.seen) <= MAX_PROMPT_CHARS

    assert check_prompt_length("a red dress", tokenizer) == 1


def test_encoding_refuses_a_prompt_over_the_cap_before_encoding_either(clip):
    tokenizer, encoder = clip
    over = parse_prompt("a " * (MAX_PROMPT_TOKENS + 1))  # one token per "a" with this tokenizer
    guard = EncoderThatMustNotRun(encoder)
    with pytest.raises(InvalidInputError) as caught:
        encode_prompt_pair(parse_prompt("red"), over, tokenizer, guard)
    assert caught.value.argument == "negative_prompt"
    with pytest.raises(InvalidInputError) as caught:
        encode_prompt_pair(over, parse_prompt("red"), tokenizer, guard)
    assert caught.value.argument == "prompt"
    with pytest.raises(InvalidInputError):
        encode_prompt(over, tokenizer, guard)
    # At the cap, counted with the tokenizer's own ids, all six windows are encoded.
    z = encode_prompt(parse_prompt("a " * MAX_PROMPT_TOKENS), tokenizer, encoder)
    assert z.shape == (1, 77 * MAX_PROMPT_WINDOWS, 32)


def test_sdxl_prompts_join_both_encoders_penultimate_layers_and_pool_bigg():
    """SDXL as the WebUI encodes it: CLIP-L's and bigG's penultimate hidden states (no final
    layer norm) side by side, weighted; bigG's projection of the first window pooled."""
    import torch
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from pipelines.clip_tokenizer import tokenizer_folder
    from pipelines.prompt_encoding import encode_prompt_pair_xl

    tokenizers = (
        CLIPTokenizer.from_pretrained(tokenizer_folder()),
        CLIPTokenizer.from_pretrained(tokenizer_folder(), pad_token="!"),
    )
    torch.manual_seed(0)

    def config(width: int, **extra) -> CLIPTextConfig:
        return CLIPTextConfig(
            hidden_size=width, intermediate_size=2 * width, num_attention_heads=2,
            num_hidden_layers=3, vocab_size=49408, max_position_embeddings=77, **extra,
        )  # fmt: skip

    encoders = (
        CLIPTextModel(config(16)).eval(),
        CLIPTextModelWithProjection(config(24, projection_dim=12)).eval(),
    )
    long_negative = parse_prompt(" ".join(["blurry"] * 100))  # two windows
    cond, uncond, pooled, negative_pooled = encode_prompt_pair_xl(
        parse_prompt("a red dress"), long_negative, tokenizers, encoders
    )
    assert cond.shape == uncond.shape == (1, 154, 16 + 24)
    assert pooled.shape == negative_pooled.shape == (1, 12)

    ids = tokenizers[1]("a red dress", padding="max_length", max_length=77).input_ids
    with torch.no_grad():
        big = encoders[1](input_ids=torch.tensor([ids]), output_hidden_states=True)
    # Unweighted words: the window is bigG's penultimate layer as it is, no final layer norm.
    assert torch.allclose(cond[0, :77, 16:], big.hidden_states[-2][0], atol=1e-5)
    assert torch.allclose(pooled, big.text_embeds, atol=1e-5)
