"""Token counts for streams that report no usage: a real tokenizer where one is installed, else an estimate.

``instrumentation.tokenizer`` chooses: ``auto`` (the default) uses tiktoken when it is installed
and its encoding loads, else the estimate; ``tiktoken`` insists on it (and falls back, with one
warning, when it cannot load); ``estimate`` never tries. tiktoken downloads an encoding file on
first use unless it is in its cache (``TIKTOKEN_CACHE_DIR``); a load that fails is not retried.

The estimate is the mean of two rules of thumb for English text and code with OpenAI-style BPE
vocabularies, rounded up: one token per 4 characters, and 4 tokens per 3 words. Counts made
either way mark the span ``otelkit.cost.status=estimated`` and name the method in
``otelkit.tokens.estimated_by``.
"""

from __future__ import annotations

import functools
import math
import re
import threading
from typing import Any, Callable

from otelkit.config import current_policy
from otelkit.instrumentation._safety import warn_once

ESTIMATE = "estimate"
_WORD = re.compile(r"\S+")
_encoders: dict[str, Callable[[str], Any] | None] = {}
_lock = threading.Lock()


def estimate(text: str) -> int:
    """The documented estimate: mean of chars/4 and words*4/3, rounded up (0 for empty text)."""
    if not text:
        return 0
    words = len(_WORD.findall(text))
    return math.ceil((len(text) / 4 + words * 4 / 3) / 2)


def _encoder(model: str) -> tuple[Callable[[str], Any] | None, str]:
    """tiktoken's encode function for ``model`` and the encoding's name, or (None, "") when unavailable."""
    try:
        import tiktoken
    except ImportError:
        return None, ""
    try:
        name = tiktoken.encoding_name_for_model(model)
    except Exception:
        name = "o200k_base"
    with _lock:
        if name not in _encoders:
            try:
                _encoders[name] = functools.partial(tiktoken.get_encoding(name).encode, disallowed_special=())
            except Exception as exc:
                _encoders[name] = None
                warn_once(f"loading the tiktoken encoding {name}", exc)
    encode = _encoders[name]
    return (encode, f"tiktoken:{name}") if encode is not None else (None, "")


def count(text: str, model: str = "") -> tuple[int, str]:
    """(tokens in ``text``, how they were counted) under the policy's ``tokenizer`` setting."""
    if current_policy().instrumentation.tokenizer != ESTIMATE:
        encode, method = _encoder(model)
        if encode is not None:
            try:
                return len(encode(text)), method
            except Exception as exc:
                warn_once("counting tokens with tiktoken", exc)
    return estimate(text), ESTIMATE
