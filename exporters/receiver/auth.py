"""Bearer tokens for ``otelkit serve``: several at once, so a token can be rotated without a gap.

Tokens come from a file, one per line (blank lines and ``#`` comments ignored). A presented
token is compared with every configured one in constant time, and neither is ever logged.
"""

from __future__ import annotations

import hmac
from pathlib import Path


class TokenError(ValueError):
    """The token file cannot be used; the message is one line and never contains a token."""


class Tokens:
    """The accepted tokens (none: every request is allowed)."""

    def __init__(self, tokens: list[str] | None = None) -> None:
        self._tokens = [token.encode() for token in tokens or []]

    @classmethod
    def from_file(cls, path: str) -> Tokens:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenError(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        tokens = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not tokens:
            raise TokenError(f"the token file {path} holds no token (one per line)")
        for number, token in enumerate(tokens, 1):
            if any(ch.isspace() for ch in token) or not token.isprintable():
                raise TokenError(f"the token file {path}: token {number} contains spaces or control characters")
        return cls(tokens)

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value (``Bearer <token>``) is accepted."""
        if not self._tokens:
            return True
        if not authorization:
            return False
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        candidate = presented.strip().encode()
        matched = False
        for token in self._tokens:  # no early exit: the time does not depend on which one matched
            matched |= hmac.compare_digest(candidate, token)
        return matched
