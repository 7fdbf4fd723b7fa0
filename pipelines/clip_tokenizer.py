"""CLIP's tokenizer files, made on this machine from the BPE vocabulary on PyPI.

A single-file checkpoint (the WebUI's, ComfyUI's) holds no tokenizer, and nothing may be
downloaded at run time. OpenAI's CLIP BPE vocabulary ships inside the ``open-clip-torch`` wheel
as ``bpe_simple_vocab_16e6.txt.gz`` (MIT; installed without its dependencies, see
requirements-nodeps.txt, and never imported: only the file is read). The ``vocab.json`` and
``merges.txt`` of ``openai/clip-vit-large-patch14`` (SD 1.5's and SDXL's first tokenizer) derive
from it exactly as CLIP's own ``SimpleTokenizer`` builds its table: the 256 byte symbols, the
same with ``</w>``, one token per merge, then ``<|startoftext|>`` and ``<|endoftext|>`` —
49,408 entries. SDXL's second tokenizer is the same vocabulary, padded with ``!``.
"""

import atexit
import gzip
import importlib.util
import json
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from .errors import ModelNotFoundError

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
# CLIP keeps the first 49,152 − 256 − 2 merges of the file (after its version line).
MERGE_COUNT = 49152 - 256 - 2
START, END = "<|startoftext|>", "<|endoftext|>"


def byte_symbols() -> list[str]:
    """GPT-2's printable stand-in for each byte, in CLIP's order: the printable bytes first (they
    stand for themselves), then the others, mapped past U+0100."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [byte for byte in range(256) if byte not in printable]
    return [chr(byte) for byte in printable] + [chr(256 + n) for n in range(len(others))]


def bpe_vocabulary_file() -> Path:
    """Where the installed ``open-clip-torch`` keeps CLIP's BPE file (its package is not
    imported: that would import torch and its other dependencies)."""
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / BPE_FILE).is_file():
            return Path(folder) / BPE_FILE
    raise ModelNotFoundError(
        f"CLIP's BPE vocabulary ({BPE_FILE}) was not found: install open-clip-torch without "
        "its dependencies (requirements-nodeps.txt, `make install`)"
    )


def clip_vocabulary(bpe_file: Path | None = None) -> tuple[dict[str, int], list[str]]:
    """CLIP's token → id table and its merges ("a b" pairs, in rank order)."""
    lines = gzip.decompress((bpe_file or bpe_vocabulary_file()).read_bytes()).decode("utf-8")
    merges = lines.split("\n")[1 : MERGE_COUNT + 1]
    symbols = byte_symbols()
    tokens = [*symbols, *(f"{symbol}</w>" for symbol in symbols)]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [START, END]
    return {token: index for index, token in enumerate(tokens)}, merges


def write_tokenizer(folder: Path, *, pad_token: str = END, bpe_file: Path | None = None) -> Path:
    """A ``CLIPTokenizer`` folder (vocab, merges, configs) in ``folder``, as the Hub has it."""
    vocab, merges = clip_vocabulary(bpe_file)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": START, "eos_token": END, "pad_token": pad_token, "unk_token": END}
    config = {
        **special,
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "do_lower_case": True,
        "add_prefix_space": False,
        "errors": "replace",
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


@lru_cache(maxsize=1)
def tokenizer_folder() -> Path:
    """This process's CLIP tokenizer folder (made once, in a temporary folder removed when the
    process ends: derived files are cheap to make, about a tenth of a second, and never go
    stale). SDXL's second tokenizer is this one loaded with ``pad_token="!"``."""
    scratch = Path(tempfile.mkdtemp(prefix="clip-tokenizer-"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return write_tokenizer(scratch / "tokenizer")
