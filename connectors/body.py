"""Webhook bodies read with a limit, before anything is buffered.

Sanic 21.12 reads the whole body of a plain route before the handler runs (up to the app's
REQUEST_MAX_SIZE, 100 MB by default, and the Rasa server's app keeps that default for its
model uploads), so a `len(request.body)` check in the handler comes after the memory is spent.
The webhook routes are streaming routes (`stream=True`) and read their body here: a
Content-Length over the limit is refused before a byte of the body is read, and a chunked
body is refused as soon as the chunks announced pass the limit (Sanic's own check in
`Http.read`, with the limit set on this request's stream). After a refusal Sanic drains
nothing: it closes the connection.
"""
from typing import Optional

from sanic.exceptions import PayloadTooLarge
from sanic.request import Request


async def read_body(request: Request, limit: int) -> Optional[bytes]:
    """The body, or None when it is larger than `limit` bytes."""
    stream = request.stream
    if stream is None or not getattr(stream, "request_body", None):
        # no body on the wire (or a Request built by hand with its body already set)
        body = request.body or b""
        return None if len(body) > limit else body
    # what is left of an oversized body is refused, not drained, after the answer
    stream.request_max_size = limit
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdecimal() and int(declared) > limit:
        return None
    try:
        await request.receive_body()
    except PayloadTooLarge:
        return None
    return request.body or b""
