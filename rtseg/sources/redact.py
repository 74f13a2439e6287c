"""Keep credentials in source URLs out of logs, errors and status messages."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

# scheme://user:password@host or scheme://user@host: the userinfo part goes.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s?#]*)@")
_SECRET_KEYS = {"password", "passwd", "pwd", "pass", "token", "access_token", "key", "apikey", "api_key",
                "auth", "secret", "signature", "sig", "user", "username"}


_NO_CREDENTIALS = ("synthetic://", "file://")  # their '@' is not a userinfo separator


def redact_url(url: str) -> str:
    """The URL with its user:password replaced by `***` and secret-looking query values
    masked: rtsp://admin:hunter2@cam/stream -> rtsp://***@cam/stream."""
    if str(url).lower().startswith(_NO_CREDENTIALS):
        return str(url)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}***@", str(url))
    if "?" in text and "://" in text:
        base, _, query = text.partition("?")
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_KEYS for k, _ in pairs):
            query = "&".join(f"{k}=***" if k.lower() in _SECRET_KEYS else f"{k}={v}" for k, v in pairs)
        text = f"{base}?{query}"
    return text


def secrets_in(url: str) -> list[str]:
    """The secret strings of a URL (password, user, secret query values), so that a caller
    can scrub them from text it did not build itself (e.g. a library's error message)."""
    if str(url).lower().startswith(_NO_CREDENTIALS):
        return []
    parts = urlsplit(str(url))
    found = [s for s in (parts.password, parts.username) if s]
    found += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_KEYS and v]
    return found


def scrub(text: str, url: str) -> str:
    """text with every credential of url masked (the URL itself redacted, then any stray
    copy of the password or user name)."""
    out = text.replace(str(url), redact_url(url))
    for secret in sorted(secrets_in(url), key=len, reverse=True):
        if len(secret) >= 3:
            out = out.replace(secret, "***")
    return out
