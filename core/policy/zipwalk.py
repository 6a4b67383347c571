"""Read a zip container's members as it streams by, front to back, keeping only the members asked for.

A zip's local file headers precede each member's data, so member names (and the data of members
wanted, e.g. the pickles inside a PyTorch checkpoint or a skops ``schema.json``) can be read in
the same single pass as the hash, without the central directory at the end and without keeping
the rest. Members written with a trailing data descriptor (size unknown up front) stop the walk:
what follows is reported as unknown, never as absent.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

_LOCAL = b"PK\x03\x04"
_HEADER = struct.Struct("<4sHHHHHIIIHH")
MAX_INFLATED = 64 << 20  # a deflated member is never inflated past this (zip bombs)


def _zip64_size(extra: bytes, usize: int) -> int:
    """The compressed size from a zip64 extra field (after the uncompressed one when that is 0xFFFFFFFF)."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        if tag == 0x0001:
            field = extra[at + 4:at + 4 + size]
            offset = 8 if usize == 0xFFFFFFFF else 0
            if len(field) >= offset + 8:
                return struct.unpack_from("<Q", field, offset)[0]
        at += 4 + size
    return 0xFFFFFFFF


class ZipWalker:
    """Feed a zip's bytes in order; ``members`` lists names seen, ``kept`` the wanted members' data."""

    def __init__(self, want: Callable[[str], bool], reserve: Callable[[int], bool]) -> None:
        self.want, self.reserve = want, reserve
        self.members: list[str] = []
        self.kept: dict[str, bytes] = {}
        self.incomplete: list[str] = []  # wanted members whose data could not be kept whole
        self.stopped = ""  # why the walk stopped before the end, if it did
        self._buf = bytearray()
        self._skip = 0
        self._take: tuple[str, int, int, bytearray] | None = None  # name, method, bytes left, data
        self._done = False

    def feed(self, chunk: bytes | memoryview) -> bool:
        """More bytes; False once nothing more is needed (end of the members, or stopped)."""
        data = memoryview(chunk)
        while data and not self._done:
            if self._skip:
                n = min(self._skip, len(data))
                self._skip -= n
                data = data[n:]
            elif self._take is not None:
                name, method, left, got = self._take
                n = min(left, len(data))
                if self.reserve(n):
                    got += data[:n]
                else:
                    self.incomplete.append(name)
                    self._take, self._skip = None, left - n
                    data = data[n:]
                    continue
                data, left = data[n:], left - n
                self._take = (name, method, left, got) if left else None
                if not left:
                    self._keep(name, method, got)
            else:
                need = _HEADER.size - len(self._buf)
                if need > 0:
                    self._buf += data[:need]
                    data = data[need:]
                    continue
                sig, _v, flags, method, _t, _d, _crc, csize, _usize, nlen, xlen = _HEADER.unpack(
                    bytes(self._buf[:_HEADER.size]))
                if sig != _LOCAL:
                    self._done = True  # the central directory: every member has been seen
                    break
                need = _HEADER.size + nlen + xlen - len(self._buf)
                if need > 0:
                    self._buf += data[:need]
                    data = data[need:]
                    continue
                name = bytes(self._buf[_HEADER.size:_HEADER.size + nlen]).decode("utf-8", "replace")
                if csize == 0xFFFFFFFF:  # zip64: the real sizes are in the extra field
                    csize = _zip64_size(bytes(self._buf[_HEADER.size + nlen:]), _usize)
                self._buf.clear()
                self.members.append(name)
                if flags & 0x08 and csize == 0:
                    self.stopped = f"member {name} has no size in its header"
                    self._done = True
                    break
                if self.want(name) and method in (0, 8):
                    self._take = (name, method, csize, bytearray())
                    if csize == 0:
                        self._take = None
                        self._keep(name, method, bytearray())
                else:
                    self._skip = csize
        return not self._done

    def _keep(self, name: str, method: int, data: bytearray) -> None:
        if method == 0:
            self.kept[name] = bytes(data)
            return
        try:
            inflate = zlib.decompressobj(-15)
            self.kept[name] = inflate.decompress(bytes(data), MAX_INFLATED)
            if inflate.unconsumed_tail:
                self.incomplete.append(name)
        except zlib.error:
            self.incomplete.append(name)
