"""What an answer from the API means: its body read within a bound, its status turned into a
result or an exception that names the request, the status and the API's own message."""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from reconcile.errors import ApiError, AuthError, BadResponseError, NotFoundError, RateLimitError

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
MAX_ANSWER_BYTES = 32 * 1024 * 1024
"""The most an answer's body may hold once decompressed. A listing page of 100 runs is a few
hundred KiB; anything near this bound is not an answer from Tallyfy."""


@dataclass(frozen=True)
class Asked:
    """The request an answer is for, as errors name it. `secret` (the token) is never quoted
    back, even when the API echoes it."""

    method: str
    path: str
    run_id: str | None
    secret: str = field(repr=False)

    @property
    def where(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "run_id": self.run_id}

    @property
    def ending(self) -> str:
        return f" for run {self.run_id}." if self.run_id else "."

    def redact(self, text: str) -> str:
        return text.replace(self.secret, "***")


@dataclass(frozen=True)
class Answer:
    """An answer read whole: status, headers and the body, decompressed."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        """`X-Request-Id`, which errors quote, when it looks like an identifier (it is shown as
        is, so anything else is left out)."""
        value = self.headers.get("X-Request-Id", "")
        return value if _REQUEST_ID.fullmatch(value) else None

    def json(self, asked: Asked) -> Any:
        """The JSON body, or BadResponseError."""
        try:
            return orjson.loads(self.body)
        except ValueError:
            kind = self.headers.get("Content-Type", "no content type")
            raise BadResponseError(
                f"The API answered HTTP {self.status} with a body that is not JSON "
                f"({kind}: {self._snippet(asked)!r})" + asked.ending,
                status=self.status,
                request_id=self.request_id,
                **asked.where,
            ) from None

    def unexpected(self, asked: Asked) -> BadResponseError:
        """Any status other than 200 below 400. A redirect is not followed (it could take the
        token elsewhere) and its body is not an answer, even when it looks like one."""
        redirect = self.status in (301, 302, 303, 307, 308)
        kind = "a redirect, which is not followed" if redirect else "not 200"
        return BadResponseError(
            f"The API answered HTTP {self.status} ({kind}); Tallyfy documents 200 for this "
            "request, so the answer is not taken for a result" + asked.ending,
            status=self.status,
            request_id=self.request_id,
            **asked.where,
        )

    def error(self, asked: Asked, org_id: str) -> ApiError:
        """The exception for a status of 400 or more."""
        status = self.status
        subject = f"run {asked.run_id}" if asked.run_id else f"organization {org_id}"
        kwargs: dict[str, Any] = {
            **asked.where,
            "status": status,
            "api_message": self._api_message(asked),
            "request_id": self.request_id,
        }
        if status == 401:
            return AuthError(
                "The API refused the access token. Personal access tokens expire after 6 months "
                "and stop working when their user logs out of the web app; create a new one under "
                "Settings > Integrations > REST API and set TALLYFY_ACCESS_TOKEN.",
                **kwargs,
            )
        if status == 403:
            return AuthError(
                f"The token's user lacks permission for {subject}. Archiving and activating need "
                "a member or administrator (light users cannot archive), and an application token "
                "works only for the organization it was issued for.",
                **kwargs,
            )
        if status == 404:
            return NotFoundError(f"The API does not know {subject}.", **kwargs)
        if status == 429:
            return RateLimitError(
                "The API kept answering 429 (rate limited) past the retry deadline; try again "
                "later or lower --rate-limit.",
                **kwargs,
            )
        return ApiError(f"The API refused the request for {subject}.", **kwargs)

    def _api_message(self, asked: Asked) -> str | None:
        try:
            body = orjson.loads(self.body)
        except ValueError:
            return self._snippet(asked) or None
        if isinstance(body, dict):
            message = body.get("message")
            if isinstance(body.get("error"), dict):
                message = body["error"].get("message")
            if isinstance(message, str):
                return asked.redact(message)
        return None

    def _snippet(self, asked: Asked) -> str:
        text = self.body[:480].decode("utf-8", errors="replace")[:120]
        return asked.redact(" ".join(text.split()))


class AnswerTooLarge(ValueError):
    """An answer's body grew past the bound."""


class UnreadableEncoding(ValueError):
    """An answer's body is compressed in a way the client did not ask for, or is corrupt."""


class BoundedBody:
    """Collects an answer's body as it arrives, decompressing gzip here rather than in httpx so
    that no answer, however small on the wire, can grow past `limit` bytes in memory."""

    def __init__(self, content_encoding: str | None, limit: int = MAX_ANSWER_BYTES) -> None:
        encoding = (content_encoding or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            # The client asks for gzip only; stacked or other encodings are not an answer to it.
            raise UnreadableEncoding(f"the body is encoded as {encoding!r}, not asked for")
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        self._limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._fed = False

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes from the wire; AnswerTooLarge past the bound."""
        if self._inflater is None:
            self._keep(chunk)
            return
        self._fed = True
        pending = chunk
        while pending:
            try:
                # At most one byte more than the room left: enough to know the bound is passed.
                out = self._inflater.decompress(pending, self._limit - self._size + 1)
            except zlib.error:
                raise UnreadableEncoding("the gzip-compressed body is corrupt") from None
            self._keep(out)
            pending = self._inflater.unconsumed_tail

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise AnswerTooLarge(f"the body is larger than {self._limit // (1024 * 1024)} MiB")
        if data:
            self._chunks.append(data)

    def content(self) -> bytes:
        """The whole body, once the wire has ended; UnreadableEncoding if a gzip stream was cut."""
        if self._inflater is not None and self._fed and not self._inflater.eof:
            raise UnreadableEncoding("the gzip-compressed body ends before its end")
        return b"".join(self._chunks)
