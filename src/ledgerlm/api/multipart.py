"""A multipart/form-data body read as it arrives, handing fields and file chunks to an upload in progress.

Only the reading happens on the event loop. What the parts set off blocks (the signature check and
the database queries of the form fields; creating, writing and fsyncing each staged file), so each
chunk the server receives is parsed in a worker thread, all of its parts' work in one hop: an
upload of many small files never holds up the node's other requests. Those threads are the
uploads' own (`in_upload_thread`), so however many uploads parse at once, the pool that the
synchronous routes share keeps its threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref

import anyio
from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from ledgerlm.api.limits import LENGTH_DIGITS, declared_length
from ledgerlm.datanets import DatanetError, UploadInProgress
from ledgerlm.datanets.upload import MAX_FIELD_BYTES
from ledgerlm.store import BlobTooLarge

# Boundaries, part headers and the form fields around the files.
FORM_OVERHEAD_BYTES = 64 * 1024
# The most bytes handed on at once: however large a chunk the server receives, a file stops
# within one of these past its limit.
READ_BUFFER = 64 * 1024
# An upload may take as long as its size needs, but one that sends nothing for this long holds a connection,
# a task and a staged file for nothing (a stalled client was kept for good).
IDLE_SECONDS = 60
# Before its signed action and manifest have arrived an upload is anyone's: one trickled a byte a minute held a
# connection for good, and a few hundred took every file descriptor. They must arrive within this...
FIELDS_SECONDS = 30
# ...and after a minute the upload must have come in at this average rate at least (32 kbit/s).
MIN_BYTES_PER_SECOND = 4096
RATE_GRACE_SECONDS = 60
MAX_BOUNDARY_BYTES = 70  # RFC 2046; the parser refuses more than 256 with an error of its own
# Threads that uploads' blocking work may hold at once (parsing chunks, staging files, the final
# parse and insert). The server's shared pool has 40: as many slow uploads would leave every
# synchronous route waiting; past this count an upload's next chunk waits for a thread instead.
UPLOAD_THREADS = 4
_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> its limiter


async def in_upload_thread(work, *args):
    """Run blocking upload `work` on one of the `UPLOAD_THREADS` threads uploads may hold."""
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(UPLOAD_THREADS)
    return await anyio.to_thread.run_sync(work, *args, limiter=limiter)


class _Parts:
    """python-multipart callbacks: collect each part's headers, then route its bytes."""

    def __init__(self, upload: UploadInProgress):
        self.upload = upload
        self.headers: dict[bytes, bytes] = {}
        self.header_field = b""
        self.header_value = b""
        self.field_name: str | None = None
        self.field_value = bytearray()
        self.is_file = False
        self.ended = False  # the closing boundary arrived: the form is whole

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self._add("header_field", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("header_value", data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
            "on_end": self.end,
        }

    def _add(self, name: str, data: bytes) -> None:
        setattr(self, name, getattr(self, name) + data)

    def part_begin(self) -> None:
        self.headers, self.field_value = {}, bytearray()

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field, self.header_value = b"", b""

    def headers_finished(self) -> None:
        disposition = self.headers.get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        self.field_name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None and b"filename*" in disposition.lower():
            # RFC 5987's encoded name alone: a file part all the same, but one whose name this node does not decode
            raise DatanetError("a file part must name its file with filename=\"...\" (UTF-8); filename*= alone "
                               "is not read", field="files")
        self.is_file = filename is not None
        if self.is_file:
            if self.field_name != "files":
                raise DatanetError(f"files go in the 'files' field, not {self.field_name!r}", field="files")
            self.upload.begin_file(filename.decode("utf-8", "replace"))

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self.is_file:
            self.upload.file_data(data[start:end])
            return
        self.field_value += data[start:end]
        if len(self.field_value) > MAX_FIELD_BYTES:
            raise DatanetError(f"form field {self.field_name!r} is longer than {MAX_FIELD_BYTES} bytes",
                               field=self.field_name)

    def part_end(self) -> None:
        if self.is_file:
            self.upload.end_file()
        else:
            self.upload.field(self.field_name, bytes(self.field_value))

    def end(self) -> None:
        self.ended = True


async def receive_upload(request: Request, upload: UploadInProgress, *, max_body: int,
                         max_files: int | None = None, idle_seconds: float = IDLE_SECONDS,
                         fields_seconds: float = FIELDS_SECONDS, min_rate: float = MIN_BYTES_PER_SECOND,
                         rate_grace: float = RATE_GRACE_SECONDS) -> None:
    """Feed the request body to `upload` chunk by chunk; refuse early on the declared sizes.

    The bytes are counted as they arrive, so a body without a Content-Length (chunked) stops at
    `max_body` (or at the signed manifest's sizes plus the form around them) like one that
    declares its length; reading stops at the form's closing boundary. At most `max_files` files
    (None: the upload's own cap) make the upload; the next file part is refused as it begins. On any error the partial files are deleted before the error reaches the client.

    Each received chunk is parsed, and its parts' blocking work done, in a worker thread; one chunk
    at a time, so the upload sees its parts in order.
    """
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise DatanetError("an upload is a multipart/form-data request", field="content-type")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        raise DatanetError(f"the multipart boundary is {len(boundary)} bytes; at most {MAX_BOUNDARY_BYTES} are read",
                           field="content-type")
    length = declared_length(request.headers.get("content-length"))
    if length is not None and length > max_body:
        shown = length if length < 10**LENGTH_DIGITS else f"more than {LENGTH_DIGITS} digits of"
        raise BlobTooLarge(
            f"the request declares {shown} bytes; an upload may hold at most {max_body} (nothing was read)",
            field="files",
        )
    if max_files is not None:
        upload.max_files = max_files
    parts = _Parts(upload)
    parser = MultipartParser(boundary, parts.callbacks())
    checked_length = False
    received = 0

    # held by the worker thread while it feeds a chunk: an abort waits for it (see the end)
    feeding = threading.Lock()
    aborted = False

    def feed(chunk: bytes) -> None:
        """Parse one received chunk, a buffer at a time, counting its bytes against the limits (blocks)."""
        with feeding:
            if not aborted:  # a worker that starts after a cancelled upload's abort stages nothing
                _feed(chunk)

    def _feed(chunk: bytes) -> None:
        nonlocal received
        try:
            for start in range(0, len(chunk), READ_BUFFER):
                if parts.ended:
                    break
                piece = chunk[start:start + READ_BUFFER]
                received += len(piece)
                declared = upload.declared_bytes
                limit = max_body if declared is None else min(max_body, declared + FORM_OVERHEAD_BYTES)
                if received > limit:
                    what = "an upload" if declared is None else "its signed manifest"
                    raise BlobTooLarge(f"the upload passed {limit} bytes, the most {what} allows with the form"
                                       " around it; nothing was stored", field="files")
                parser.write(piece)
        except MultipartParseError as exc:
            raise DatanetError(f"the upload is not a well-formed multipart/form-data body: {exc}",
                               field="body") from None

    try:
        stream = request.stream()
        started = time.monotonic()
        busy = 0.0  # the node's own time (waiting for an upload thread, parsing, staging): not the client's
        while not parts.ended:  # what a client sends after the closing boundary is no part of the form
            elapsed = time.monotonic() - started - busy
            signed = upload.declared_bytes is not None
            if not signed and elapsed >= fields_seconds:
                raise DatanetError(f"the signed action and manifest did not arrive within {fields_seconds:g} s of "
                                   "the upload's start; nothing was stored", field="body", status=408)
            if elapsed > rate_grace and received < min_rate * elapsed:
                raise DatanetError(f"the upload came in at {received / elapsed:.0f} bytes/s, under the "
                                   f"{min_rate:g} it must keep after {rate_grace:g} s; nothing was stored",
                                   field="body", status=408)
            wait = idle_seconds if signed else min(idle_seconds, fields_seconds - elapsed)
            try:
                chunk = await asyncio.wait_for(anext(stream), wait)
            except StopAsyncIteration:
                break
            except TimeoutError:
                if wait < idle_seconds:
                    continue  # the deadline for the signed fields, named above
                raise DatanetError(f"no byte of the upload arrived for {idle_seconds:g} s; nothing was stored",
                                   field="body", status=408) from None
            except ClientDisconnect:  # a refusal like any other, not a server fault with a trace in the log
                raise DatanetError("the client went away before the upload ended; nothing was stored",
                                   field="body") from None
            if chunk:
                working = time.monotonic()
                await in_upload_thread(feed, chunk)
                busy += time.monotonic() - working
            if not checked_length and length is not None and upload.declared_bytes is not None:
                checked_length = True
                if length > upload.declared_bytes + FORM_OVERHEAD_BYTES:
                    raise BlobTooLarge(
                        f"the request declares {length} bytes but the signed manifest only"
                        f" {upload.declared_bytes}; refused before reading the files",
                        field="files",
                    )
        parser.finalize()
        if not parts.ended:
            # A body cut short (a Content-Length below the real size, a chunked body that stopped) ends in
            # the middle of a part; what arrived of it is not the file that was meant.
            raise DatanetError("the upload body ended before the form's closing boundary: it was cut short,"
                               " and nothing was stored", field="body")
    except Exception:
        await in_upload_thread(upload.abort)  # deleting up to max_files staged files blocks too
        raise
    except BaseException:  # cancelled: no awaiting any more
        # A task cancelled natively (a server's shutdown timeout) stops awaiting the worker, which goes on
        # staging the chunk in hand: the abort waits for it, or the files it is writing would outlive it.
        with feeding:
            aborted = True
            upload.abort()
        raise
