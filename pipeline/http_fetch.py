"""Resumable, verified HTTP(S) download of one file, with retries and secret-free messages.

`fetch_file(url, dest, ...)` streams into `<dest>.part`, resuming an existing `.part` with
`Range: bytes=N-`. When the body is complete it checks the size against the server's promise
(Content-Length, or the total of Content-Range), runs the caller's `verify(part)`, and only then
renames `.part` onto `dest`, so `dest` exists only as a complete, verified file.

What happens when things go wrong:

- connection refused/reset/dropped, timeout, a short body, HTTP 5xx/408/429: retry with an
  exponential back-off, resuming from the bytes already on disk;
- the server ignores `Range` (200 instead of 206): the `.part` is truncated and the file starts
  again from byte 0 (appending a full body to a partial one would corrupt it silently);
- `verify` rejects the finished file: the `.part` is deleted and the file fetched again; this
  counts as a retry;
- any other HTTP error (404, 403, 401, ...): no retry, an error at once; more requests cannot fix it.

Credentials never reach a message: user:password in the URL becomes a Basic `Authorization`
header that is not forwarded on redirects, and every URL in a log line or error goes through
`redact()`, which drops the userinfo, the query string (tokens) and the fragment.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # read size: large enough to keep syscalls rare, small enough for a smooth bar
_CONTENT_RANGE = re.compile(r"^bytes\s+(\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes\s+\*/(\d+)$")
_TRANSIENT_HTTP = frozenset({408, 425, 429})  # plus every 5xx: the server may answer next time


@dataclass(frozen=True)
class FetchPolicy:
    retries: int  # attempts after the first one, per file
    timeout_s: float  # socket timeout for connecting and for each read
    backoff_s: float = 1.0  # delay before the first retry; doubles on each further retry
    backoff_max_s: float = 30.0  # the doubling stops here


class FetchError(RuntimeError):
    """A file could not be fetched. `url` is already redacted; `permanent` means retrying is pointless."""

    def __init__(self, message: str, *, url: str, permanent: bool, attempts: int):
        super().__init__(message)
        self.url = url
        self.permanent = permanent
        self.attempts = attempts


class VerificationError(ValueError):
    """Raised by a `verify` callback: the downloaded bytes are not a valid file of their type."""


class _Transient(Exception):
    """Internal: this attempt failed in a way another attempt may fix."""


def redact(url: str) -> str:
    """The URL without userinfo, query string and fragment: safe to print."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    query = "?<redacted>" if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", "")) + query


def join_url(base: str, rel_path: str) -> str:
    """`base` with `rel_path` appended to its path; the base's query string (a token) is kept."""
    parts = urllib.parse.urlsplit(base)
    path = parts.path.rstrip("/") + "/" + urllib.parse.quote(rel_path.lstrip("/"))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def backoff_delay(retry: int, policy: FetchPolicy) -> float:
    """Seconds to wait before retry number `retry` (1-based): backoff_s * 2**(retry-1), capped."""
    return min(policy.backoff_s * 2.0 ** (retry - 1), policy.backoff_max_s)


def _describe(err: BaseException) -> str:
    """A short reason for a network error (these never contain the URL; the request has no userinfo)."""
    if isinstance(err, urllib.error.URLError) and not isinstance(err.reason, str):
        err = err.reason
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _request(url: str, offset: int) -> urllib.request.Request:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    req = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=netloc, fragment="")))
    req.add_header("User-Agent", "beep3d-downloader/1")
    req.add_header("Accept-Encoding", "identity")  # sizes must match the bytes on disk
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        # Unredirected: a redirect to another host must not carry the credentials along.
        req.add_unredirected_header("Authorization", f"Basic {token}")
    return req


def _attempt(url: str, part: Path, timeout_s: float, on_bytes: Callable[[int], None] | None) -> int | None:
    """One request into `part`; returns the expected total size (None if the server gave none)."""
    offset = part.stat().st_size if part.exists() else 0
    shown = redact(url)
    try:
        resp = urllib.request.urlopen(_request(url, offset), timeout=timeout_s)
    except urllib.error.HTTPError as err:
        err.close()
        if err.code == 416 and offset:
            # The `.part` is as long as the file or longer (left by an interrupted earlier run).
            match = _UNSATISFIED_RANGE.match(err.headers.get("Content-Range", "") or "")
            if match and int(match.group(1)) == offset:
                return offset  # already complete: verify it as it is
            part.unlink()
            raise _Transient("stale partial file does not match the server's size; restarting") from None
        if err.code >= 500 or err.code in _TRANSIENT_HTTP:
            raise _Transient(f"HTTP {err.code} {err.reason}") from None
        hint = " (check the credentials or token in the base URL)" if err.code in (401, 403) else ""
        raise FetchError(
            f"HTTP {err.code} {err.reason} for {shown}{hint}", url=shown, permanent=True, attempts=1
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        raise _Transient(_describe(err)) from None
    with resp:
        total = resp.headers.get("Content-Length")
        total = int(total) if total is not None else None
        if resp.status == 206:
            match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "") or "")
            if not match or int(match.group(1)) != offset:
                part.unlink()
                raise _Transient("server answered a different byte range than asked; restarting")
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        else:
            if offset:
                log.info("%s: server ignored the Range request; restarting from byte 0", shown)
            offset, mode = 0, "wb"
        written = offset
        with open(part, mode) as fh:
            while True:
                try:
                    # read1: whatever has arrived, so a reset loses nothing already received
                    chunk = resp.read1(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as err:
                    raise _Transient(f"{_describe(err)} after {written} bytes") from None
                if not chunk:
                    break
                fh.write(chunk)  # a local write error (disk full) is not retried: it propagates
                written += len(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    if total is not None and written < total:
        raise _Transient(f"connection closed after {written} of {total} bytes")
    if total is not None and written > total:
        part.unlink()
        raise _Transient(f"received {written} bytes but the server announced {total}; restarting")
    return total


def fetch_file(
    url: str,
    dest: Path,
    policy: FetchPolicy,
    verify: Callable[[Path], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> int:
    """Download `url` to `dest` (resuming `<dest>.part`); returns the number of retries used.

    `verify(path)` raises VerificationError if the finished bytes are not a valid file.
    Raises FetchError (with a redacted URL) when the retries are spent or the error is permanent.
    A `.part` left by transient failures is kept so the next run resumes it; one that failed
    verification is deleted.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    shown = redact(url)
    reason = ""
    for attempt in range(policy.retries + 1):
        if attempt:
            delay = backoff_delay(attempt, policy)
            log.warning("%s: retry %d/%d in %.2f s (%s)", shown, attempt, policy.retries, delay, reason)
            time.sleep(delay)
        try:
            _attempt(url, part, policy.timeout_s, on_bytes)
            if verify is not None:
                verify(part)
        except _Transient as err:
            reason = str(err)
            continue
        except VerificationError as err:
            reason = f"verification failed: {err}"
            part.unlink(missing_ok=True)
            continue
        except FetchError as err:
            err.attempts = attempt + 1
            raise
        os.replace(part, dest)
        return attempt
    raise FetchError(
        f"gave up on {shown} after {policy.retries + 1} attempts; last error: {reason}",
        url=shown,
        permanent=False,
        attempts=policy.retries + 1,
    )
