"""moto's S3 server for the one-large-file benchmark, with ranged reads that cost their length, as S3's do.

moto answers every GET by copying the whole object out of its buffer and then slicing the requested
range from the copy; a completed multipart upload is joined in memory. An 8 GiB object read as 16
concurrent 2 MiB ranges would copy 128 GiB per round of ranges, which no machine here holds, so the
single-file benchmark cannot run on moto as it is. This launcher runs moto's own server (``moto_server``'s
``main``) with two changes, for the benchmark only (the tests use ``moto_server`` unchanged):

* a GET with a ``Range`` header reads that range from the object's file, under the object's lock;
* a completed multipart upload is joined into a temporary file instead of a bytes object.

Every other request, header, check and answer is moto's.
Usage: ``python bench/moto_ranged.py -H HOST -p PORT``.
"""

from __future__ import annotations

import codecs
import tempfile
import threading
from typing import Any

from moto.s3 import models, responses
from moto.s3.exceptions import EntityTooSmall, InvalidPart, MalformedXML
from moto.server import main as moto_main

_request = threading.local()  # set while this thread answers a GET with a Range header


class _Window:
    """An object's bytes as moto's range handler uses them: a length, and slices read from the file."""

    def __init__(self, key: models.FakeKey) -> None:
        self._key = key

    def __len__(self) -> int:
        return self._key.size

    def __bool__(self) -> bool:
        return True

    def __getitem__(self, part: slice) -> bytes:
        start, stop, _ = part.indices(self._key.size)
        with self._key.lock:
            self._key._value_buffer.seek(start)
            return self._key._value_buffer.read(max(0, stop - start))


class _Joined:
    """A completed multipart upload's bytes, joined in a file."""

    def __init__(self, file: Any, size: int) -> None:
        self.file, self.size = file, size


_moto_value = models.FakeKey.value


def _value(self: models.FakeKey) -> Any:
    if getattr(_request, "ranged", False):
        return _Window(self)
    return _moto_value.fget(self)


def _set_value(self: models.FakeKey, new_value: Any) -> None:
    if isinstance(new_value, _Joined):
        self._value_buffer.close()
        self._value_buffer = new_value.file
        self.contentsize = new_value.size
        return
    _moto_value.fset(self, new_value)


def _complete(self: models.FakeMultipart, body: Any) -> tuple[Any, str, Any]:
    """moto's ``FakeMultipart.complete`` with the parts joined into a file (the same checks and ETag)."""
    decode_hex = codecs.getdecoder("hex_codec")
    joined = tempfile.TemporaryFile()  # noqa: SIM115 - it becomes the object's buffer, closed with it
    md5s, size, count, last = bytearray(), 0, 0, None
    checksum = models.MultipartChecksumBuilder(self.metadata.get("x-amz-checksum-algorithm"),
                                               self.metadata.get("x-amz-checksum-type"))
    for number, etag in body:
        part = self.parts.get(number)
        if part is None or part.etag.replace('"', "") != etag.replace('"', ""):
            raise InvalidPart()
        if last is not None and last.contentsize < models.S3_UPLOAD_PART_MIN_SIZE:
            raise EntityTooSmall()
        md5s.extend(decode_hex(part.etag.replace('"', ""))[0])
        value = part.value
        joined.write(value)
        checksum.addPart(value)
        size, count, last = size + len(value), count + 1, part
    if count == 0:
        raise MalformedXML
    return _Joined(joined, size), f"{models.md5_hash(bytes(md5s)).hexdigest()}-{count}", checksum.build()


_moto_key_response = responses.S3Response.key_response


def _key_response(self: responses.S3Response, request: Any, *args: Any) -> Any:
    _request.ranged = request.method == "GET" and bool(request.headers.get("range"))
    try:
        return _moto_key_response(self, request, *args)
    finally:
        _request.ranged = False


models.FakeKey.value = property(_value, _set_value)
models.FakeMultipart.complete = _complete
responses.S3Response.key_response = _key_response

if __name__ == "__main__":
    moto_main()
