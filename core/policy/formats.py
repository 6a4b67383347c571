"""The serialization format of a file, told by its content (first bytes), never by its name.

:func:`sniff` looks at a file's first :data:`SNIFF_BYTES` bytes. Pickles are recognised by their
protocol header (``0x80 <protocol>``) or, for protocols 0 and 1, by a prefix that parses as pickle
opcodes; zip containers (PyTorch, skops, Keras, NumPy ``.npz``) are told apart later by their member
names (:func:`zip_family`). Nothing is ever unpickled.
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
from dataclasses import dataclass

SNIFF_BYTES = 4096

#: format families a policy can name in ``serialization.deny`` / ``allow``
FAMILIES = ("pickle", "skops", "safetensors", "onnx", "keras", "tensorflow", "numpy", "hdf5", "gguf",
            "compressed", "zip", "text", "unknown")
PICKLE = "pickle"


@dataclass(frozen=True)
class Format:
    """A file's format: its ``family`` (one of :data:`FAMILIES`) and a short description."""

    family: str
    detail: str

    def describe(self) -> str:
        """``family`` plus what it is, e.g. ``pickle (protocol 4)``."""
        return self.family if self.detail in ("", self.family) else f"{self.family} ({self.detail})"


_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"),
               (b"\x04\x22\x4d\x18", "lz4"), (b"ZF", "joblib zlib"), (b"(\xb5/\xfd", "zstd"))
_PROTO01_FIRST = frozenset(b"(]}cNIFLSVli")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _opcodes(head: bytes) -> tuple[list[str], bool, bool]:
    """Opcode names a prefix parses into (until the first error), whether STOP was reached, and
    whether parsing stopped only because an argument runs past the prefix."""
    names: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(head)):
            parts = str(arg).split(" ", 1)
            if op.name in ("GLOBAL", "INST") and not all(_IDENTIFIER.match(p) for p in parts):
                return names, False, False  # "module name" that no import could resolve: not a pickle
            names.append(op.name)
            if op.name == "STOP":
                return names, _well_formed(head), False
    except Exception as exc:  # the prefix ends mid-opcode, or it is not a pickle at all
        cut = len(head) >= SNIFF_BYTES and any(w in str(exc) for w in ("remain", "no newline", "not enough"))
        return names, False, cut
    return names, False, len(head) >= SNIFF_BYTES


def _well_formed(head: bytes) -> bool:
    """True when the pickle up to its STOP keeps a consistent stack (what a real pickler writes)."""
    try:
        pickletools.dis(io.BytesIO(head), out=io.StringIO())
        return True
    except Exception:  # stack or mark misuse: bytes that merely look like opcodes
        return False


def _pickle_with_header(head: bytes) -> bool:
    """``0x80 <protocol>`` followed by valid opcodes: to STOP, three of them, or one cut by the prefix."""
    names, stopped, cut = _opcodes(head)
    return stopped or len(names) >= 3 or (cut and len(names) >= 1)


def _pickle_protocol01(head: bytes) -> bool:
    """A header-less (protocol 0/1) pickle: valid opcodes that end with STOP or import something.

    A loader runs opcodes one by one, so a prefix that imports before it breaks counts.
    """
    if not head or head[0] not in _PROTO01_FIRST:
        return False
    names, stopped, _cut = _opcodes(head)
    return (stopped and len(names) >= 3) or "GLOBAL" in names or "INST" in names


def _safetensors(head: bytes, size: int | None) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= n <= 100 * (1 << 20) and (size is None or n + 8 <= size)


def _numpy(head: bytes) -> Format:
    try:
        major = head[6]
        hlen = struct.unpack("<H", head[8:10])[0] if major == 1 else struct.unpack("<I", head[8:12])[0]
        header = head[10 if major == 1 else 12:][:hlen].decode("latin-1")
    except (IndexError, struct.error):
        return Format("numpy", "npy")
    # An object array is stored as a pickle after the header: loading it runs pickle.
    if "'descr': '|O'" in header or "'descr': 'O'" in header:
        return Format(PICKLE, "numpy object array")
    return Format("numpy", "npy")


def _onnx_like(head: bytes) -> bool:
    # ModelProto: field 1 (ir_version, varint, small), then producer / graph / opset fields.
    return len(head) > 3 and head[0] == 0x08 and 1 <= head[1] <= 20 and head[2] in (0x12, 0x1A, 0x22, 0x2A,
                                                                                     0x32, 0x3A, 0x42)


def _text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the end of the prefix


def sniff(head: bytes, name: str, size: int | None = None) -> Format:
    """The format of a file whose content starts with ``head``; ``name`` (its path) only refines it.

    A zip container comes back as family ``zip``: see :func:`zip_family` for what it holds.
    """
    base = name.rsplit("/", 1)[-1].lower()
    if len(head) >= 2 and head[0] == 0x80 and 0 <= head[1] <= 5 and _pickle_with_header(head):
        return Format(PICKLE, f"protocol {head[1]}")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return Format("zip", "zip")
    if head.startswith(b"\x93NUMPY"):
        return _numpy(head)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return Format("hdf5", "HDF5")
    if head.startswith(b"GGUF"):
        return Format("gguf", "GGUF")
    if _safetensors(head, size):
        return Format("safetensors", "safetensors")
    for magic, what in _COMPRESSED:
        if head.startswith(magic):
            return Format("compressed", what)
    if _pickle_protocol01(head):
        return Format(PICKLE, "protocol 0/1")
    if base == "saved_model.pb" or base == "saved_model.pbtxt" or "/variables/variables." in f"/{name}":
        return Format("tensorflow", "SavedModel")
    if base.endswith(".onnx") and _onnx_like(head):
        return Format("onnx", "ONNX")
    if not head:
        return Format("text", "empty")
    if _text(head):
        return Format("text", "text")
    if _onnx_like(head):
        return Format("onnx", "ONNX (by content)")
    return Format("unknown", "unrecognised binary")


def zip_family(members: list[str]) -> Format:
    """What a zip container holds, from its member names (as far as they were read)."""
    names = [m.rsplit("/", 1)[-1] for m in members]
    if any(n == "data.pkl" or n.endswith(".pkl") for n in names):
        return Format(PICKLE, "PyTorch zip" if any(m.endswith("/data.pkl") or m == "data.pkl"
                                                   for m in members) else "zip of pickles")
    if "schema.json" in members:
        return Format("skops", "skops zip")
    if "config.json" in names and any(n.endswith(".weights.h5") or n == "model.weights.h5" for n in names):
        return Format("keras", "Keras v3 zip")
    if members and all(n.endswith(".npy") for n in names):
        return Format("numpy", "npz")
    return Format("zip", "zip")
