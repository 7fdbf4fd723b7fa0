"""The WebUI's "parameters" text (infotext): writing, parsing, and storing it in pictures.

The format follows AUTOMATIC1111's ``processing.create_infotext`` and
``infotext_utils.parse_generation_parameters`` so our pictures paste into the WebUI (PNG Info →
Send to txt2img) and WebUI pictures parse here the same way::

    prompt (may span lines)
    Negative prompt: negative (may span lines)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768

The WebUI's prompts may span lines; ours never do (``format_infotext`` writes each on one line),
so words inside a prompt can never be read back as a line of their own.

Saved PNGs also carry an "AI-generated" label: a ``ai_generated: true`` text chunk, the IPTC
``DigitalSourceType`` term for generated pictures (``trainedAlgorithmicMedia``) as a text chunk,
and the same term in an XMP packet (``Iptc4xmpExt:DigitalSourceType``), where photo tools and
content-credential checkers look for it.
"""

import json
import re
from collections.abc import Mapping
from os import PathLike
from typing import IO, Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .errors import InvalidInputError
from .text import escape_unsafe, has_unsafe, one_line

# The WebUI writes these first, in this order; anything else follows in the caller's order.
KEY_ORDER: tuple[str, ...] = (
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Seed",
    "Size",
    "Model hash",
    "Model",
    "VAE hash",
    "VAE",
    "Denoising strength",
    "Clip skip",
    "Mask blur",
    "Inpaint area",
    "Masked area padding",
    "ControlNet 0",
    "ControlNet 1",
    "Lora hashes",
    "Version",
)
PARAMETERS_KEY = "parameters"
AI_GENERATED_KEY = "ai_generated"
DIGITAL_SOURCE_TYPE_KEY = "DigitalSourceType"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
# PNG keeps XMP in an uncompressed iTXt chunk of this keyword (XMP Specification Part 3).
XMP_KEY = "XML:com.adobe.xmp"
XMP_PACKET = f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">
   <Iptc4xmpExt:DigitalSourceType>{DIGITAL_SOURCE_TYPE}</Iptc4xmpExt:DigitalSourceType>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="r"?>"""

# The sd-webui-controlnet extension's infotext fields (ControlNetUnit.infotext_fields), in order.
CONTROLNET_FIELDS: tuple[str, ...] = (
    "Module",
    "Model",
    "Weight",
    "Resize Mode",
    "Processor Res",
    "Threshold A",
    "Threshold B",
    "Guidance Start",
    "Guidance End",
    "Pixel Perfect",
    "Control Mode",
)

# The WebUI's own patterns (infotext_utils.py): a key starts with a word character; a value is a
# JSON string or runs to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE_PREFIX = "Negative prompt:"

# What parse_generation_parameters fills in when a key is missing: the WebUI's defaults, so an
# infotext without them means what it meant to the WebUI that wrote it.
PARSE_DEFAULTS: dict[str, object] = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
    "Refiner switch by sampling steps": False,
}

_EXIF_IFD = 0x8769
_EXIF_USER_COMMENT = 0x9286


def quote(value: object) -> str:
    """A value as the WebUI writes it: JSON-quoted when it holds ``,``, ``:`` or a newline.

    Unlike the WebUI, any other character that breaks or reorders lines (``pipelines.text``) is
    quoted too, and written as a ``\\uXXXX`` escape, so no value spans lines; JSON readers, the
    WebUI's included, decode it back as it was.
    """
    text = str(value)
    if "," not in text and ":" not in text and not has_unsafe(text):
        return text
    # json.dumps escapes the C0 controls (newlines among them) but keeps the rest as they are.
    return escape_unsafe(json.dumps(text, ensure_ascii=False))


def unquote(text: str) -> str:
    """A value as the WebUI reads it: a JSON string is decoded, anything else kept."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def format_controlnet_unit(unit: Mapping[str, object]) -> str:
    """One ControlNet unit as sd-webui-controlnet writes it ("Module: openpose, Model: ...").

    Keys are the extension's display names ("Guidance Start") or field names
    ("guidance_start"). A value holding ``,`` or ``:`` cannot be read back by the extension, so it
    is refused (the extension writes an empty unit instead).
    """
    by_display = {_display_name(key): value for key, value in unit.items()}
    unknown = sorted(set(by_display) - set(CONTROLNET_FIELDS))
    if unknown:
        raise InvalidInputError("controlnet", f"unknown ControlNet infotext fields {unknown}")
    parts = []
    for field in CONTROLNET_FIELDS:
        if field not in by_display:
            continue
        text = str(by_display[field])
        if "," in text or ":" in text:
            raise InvalidInputError("controlnet", f"{field} {text!r} may not contain ',' or ':'")
        parts.append(f"{field}: {text}")
    return ", ".join(parts)


def _display_name(key: str) -> str:
    return " ".join(word.capitalize() for word in key.replace("_", " ").split())


def format_lora_hashes(hashes: Mapping[str, str]) -> str:
    """The "Lora hashes" value: ``name: hash`` pairs, names stripped of ``:`` and ``,`` as the
    WebUI's Lora extension does so the pairs stay separable."""
    return ", ".join(
        f"{name.replace(':', '').replace(',', '')}: {short_hash}"
        for name, short_hash in hashes.items()
    )


def _format_value(key: str, value: object) -> object:
    """Structured values (size pairs, ControlNet units, LoRA hashes) in the WebUI's spelling."""
    if key == "Size" and isinstance(value, tuple | list):
        width, height = value
        return f"{width}x{height}"
    if key.startswith("ControlNet ") and isinstance(value, Mapping):
        return format_controlnet_unit(value)
    if key == "Lora hashes" and isinstance(value, Mapping):
        return format_lora_hashes(value)
    return value


def format_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """The WebUI infotext of one picture.

    ``params`` values may be plain values or, for "Size", a (width, height) pair; for
    "ControlNet N", a mapping of unit fields; for "Lora hashes", a name → hash mapping. None
    values are left out, as the WebUI does.

    The prompts are written on one line each (``pipelines.text.one_line``: line breaks and other
    control characters become spaces) and a prompt that would begin "Negative prompt:" begins
    "negative prompt:" instead, so ``parse_infotext`` reads back exactly these two prompts and
    these parameters, whatever words they hold. The builders already hand over one-line prompts;
    this is the last line of defence.
    """
    ordered = [key for key in KEY_ORDER if key in params]
    ordered += [key for key in params if key not in KEY_ORDER]
    pairs = []
    for key in ordered:
        value = _format_value(key, params[key])
        if value is None:
            continue
        # The WebUI writes a flag whose value equals its key as the bare key.
        pairs.append(key if key == value else f"{key}: {quote(value)}")
    negative_prompt = one_line(negative_prompt).strip()
    negative = f"\n{_NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{_prompt_line(prompt)}{negative}\n{', '.join(pairs)}".strip()


def _prompt_line(prompt: str) -> str:
    """The prompt on one line that cannot be read back as the negative prompt's."""
    line = one_line(prompt).strip()
    if line.startswith(_NEGATIVE_PREFIX):
        # CLIP's tokenizer lowercases every prompt, so this spelling means the same to the model,
        # and the line stays the prompt's.
        line = line[0].lower() + line[1:]
    return line


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith(_NEGATIVE_PREFIX):
            negative_lines.append(line[len(_NEGATIVE_PREFIX) :].strip())
        elif negative_lines:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    return "\n".join(prompt_lines), "\n".join(negative_lines)


def _parse_params(line: str) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, raw in _PARAM.findall(line):
        # The WebUI's parser fails on an empty value and skips that key; so does this one.
        if not raw:
            continue
        value = unquote(raw) if raw[0] == '"' and raw[-1] == '"' else raw
        size = _IMAGE_SIZE.match(value)
        if size is not None:
            result[f"{key}-1"] = size.group(1)
            result[f"{key}-2"] = size.group(2)
        else:
            result[key] = value
    return result


def parse_infotext(text: str) -> dict[str, object]:
    """The WebUI's reading of an infotext (``parse_generation_parameters``).

    Returns "Prompt", "Negative prompt" and every ``Key: value`` of the last line, unquoted and
    as strings, exactly as the WebUI keeps them (so "Steps" is "20"); "Size: 512x768" becomes
    "Size-1": "512" and "Size-2": "768" (strings too: the WebUI's parser leaves them strings).
    Missing keys get :data:`PARSE_DEFAULTS`; "Sampler" stays as written, so an old "DPM++ 2M
    Karras" is read with "Schedule type": "Automatic" and ``samplers.resolve_sampler`` splits it.
    The WebUI's style extraction, "Emphasis" detection and version back-compat flags need its
    settings and are not reproduced.
    """
    *lines, last_line = text.strip().split("\n")
    # A last line with fewer than 3 parameters is still prompt text (the WebUI's rule).
    if len(_PARAM.findall(last_line)) < 3:
        lines.append(last_line)
        last_line = ""
    prompt, negative_prompt = _split_prompts(lines)
    result = _parse_params(last_line)
    result["Prompt"] = prompt
    result["Negative prompt"] = negative_prompt
    hypernet = result.get("Hypernet")
    if hypernet is not None:
        result["Prompt"] = f"{prompt}<hypernet:{hypernet}:{result.get('Hypernet strength', '1.0')}>"
    for key, value in PARSE_DEFAULTS.items():
        result.setdefault(key, value)
    return result


def infotext_pnginfo(text: str) -> PngInfo:
    """PNG text chunks: the WebUI's ``parameters`` and the AI-generated label (text and XMP)."""
    info = PngInfo()
    # add_text writes tEXt for Latin-1 text and iTXt (UTF-8) otherwise, as the WebUI's save does.
    info.add_text(PARAMETERS_KEY, text)
    info.add_text(AI_GENERATED_KEY, "true")
    info.add_text(DIGITAL_SOURCE_TYPE_KEY, DIGITAL_SOURCE_TYPE)
    info.add_itxt(XMP_KEY, XMP_PACKET, zip=False)
    return info


def save_png_with_infotext(
    image: Image.Image, path: str | PathLike[str] | IO[bytes], text: str
) -> None:
    """Save ``image`` as PNG with the infotext and the AI-generated label."""
    image.save(path, format="PNG", pnginfo=infotext_pnginfo(text))


def _decode_user_comment(raw: bytes | str) -> str | None:
    """EXIF UserComment: an 8-byte charset header, then the text (the WebUI writes UNICODE)."""
    if isinstance(raw, str):
        return raw
    header, body = raw[:8], raw[8:]
    if header.startswith(b"UNICODE"):
        # piexif (which the WebUI uses) writes UTF-16 big-endian; a BOM, if any, wins.
        encoding = "utf-16" if body[:2] in (b"\xfe\xff", b"\xff\xfe") else "utf-16-be"
        return body.decode(encoding, errors="replace")
    if header.startswith(b"ASCII") or header == b"\0" * 8:
        return body.decode("ascii", errors="replace").rstrip("\0")
    return None


def read_png_infotext(path_or_image: Any) -> str | None:
    """The infotext stored in a picture, or None.

    Reads a PNG's ``parameters`` chunk, and the EXIF UserComment where the WebUI keeps it in
    JPEG and WebP files. Takes a path, a file object or an open PIL image.
    """
    if isinstance(path_or_image, Image.Image):
        return _infotext_of(path_or_image)
    with Image.open(path_or_image) as image:
        return _infotext_of(image)


def _infotext_of(image: Image.Image) -> str | None:
    parameters = image.info.get(PARAMETERS_KEY)
    if isinstance(parameters, str):
        return parameters
    comment = image.getexif().get_ifd(_EXIF_IFD).get(_EXIF_USER_COMMENT)
    if comment:
        return _decode_user_comment(comment)
    return None
