"""What the policy checks learn from a model's files, in the comparison's single read of them.

A :class:`ModelInspector` is an :data:`core.compare.observe.ObserveFile`: for each file it tells
the format from the first bytes (:func:`core.policy.formats.sniff`), keeps the few small text
files the checks read (``MLmodel``, ``requirements.txt``, …) up to :data:`TEXT_BOUND`, walks zip
containers for their member names (:mod:`core.policy.zipwalk`), and hands pickle bytes to the
scanner (:mod:`core.policy.scanner`). Bytes kept for scanning share one :data:`SCAN_BUDGET` across
all files read at once; a pickle larger than what is left is scanned on its first part and its scan
says so (inconclusive), never "clean". Files a policy does not need are not observed at all.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, field

from core.compare.observe import FileObserver
from core.policy.formats import PICKLE, SNIFF_BYTES, Format, sniff, zip_family
from core.policy.scanner import INCONCLUSIVE, ScanFinding, scan_pickle
from core.policy.zipwalk import ZipWalker

TEXT_BOUND = 1 << 20
SCAN_BUDGET = 48 << 20


@dataclass
class FileFacts:
    """One file as the inspector saw it: its format by content, its pickle scans, zip member names."""

    path: str
    size: int | None
    format: Format
    scans: list[tuple[str, ScanFinding]] = field(default_factory=list)  # (file or file:member, finding)
    members: list[str] = field(default_factory=list)


class _Budget:
    def __init__(self, limit: int) -> None:
        self.limit, self.used, self._lock = limit, 0, threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.used -= n


def _npy_data_offset(head: bytes) -> int:
    try:
        if head[6] == 1:
            return 10 + struct.unpack("<H", head[8:10])[0]
        return 12 + struct.unpack("<I", head[8:12])[0]
    except (IndexError, struct.error):
        return len(head)


class ModelInspector:
    """Observes a model tree's files for a policy (see the module docstring).

    ``formats``: tell every file's format; ``scan``: scan pickle-family bytes; ``texts``: relative
    paths of text files to keep.
    """

    def __init__(self, *, formats: bool, scan: bool, texts: frozenset[str] = frozenset(),
                 budget: int = SCAN_BUDGET) -> None:
        self.formats, self.scan, self.wanted_texts = formats, scan, texts
        self.budget = _Budget(budget)
        self.facts: dict[str, FileFacts] = {}
        self.texts: dict[str, bytes] = {}
        self.too_large: set[str] = set()
        self._lock = threading.Lock()
        self._open: dict[str, _Watch] = {}

    def __call__(self, rel: str, size: int | None) -> FileObserver | None:
        """The observer for file ``rel`` (None when the policy needs nothing from it)."""
        text = rel in self.wanted_texts
        if not (self.formats or text):
            return None
        watch = _Watch(self, rel, size, text)
        with self._lock:
            # A transfer restarted from the first byte: what its broken attempt kept is given back.
            earlier = self._open.pop(rel, None)
            self._open[rel] = watch
        if earlier is not None:
            earlier.release()
        return watch

    def record(self, facts: FileFacts | None, rel: str, text: bytes | None, text_too_large: bool) -> None:
        """Store what was learnt of ``rel`` (a restarted transfer's later read replaces an earlier one)."""
        with self._lock:
            self._open.pop(rel, None)
            if facts is not None:
                self.facts[rel] = facts
            if text is not None:
                self.texts[rel] = text
            if text_too_large:
                self.too_large.add(rel)


class _Watch:
    """One file being read: head first, then pickle bytes, zip members or text as the format needs."""

    def __init__(self, owner: ModelInspector, rel: str, size: int | None, text: bool) -> None:
        self.owner, self.rel, self.size, self.want_text = owner, rel, size, text
        self.head = bytearray()
        self.format: Format | None = None
        self.text: bytearray | None = bytearray() if text else None
        self.text_too_large = False
        self.pickle: bytearray | None = None
        self.pickle_complete = True
        self.zip: ZipWalker | None = None
        self.reserved = 0

    def _reserve(self, n: int) -> bool:
        if self.owner.budget.reserve(n):
            self.reserved += n
            return True
        return False

    def feed(self, chunk: bytes | memoryview) -> bool:
        more = False
        if self.text is not None:
            if len(self.text) + len(chunk) > TEXT_BOUND:
                self.text, self.text_too_large = None, True
            else:
                self.text += chunk
                more = True
        if not self.owner.formats:
            return more
        if self.format is None:
            need = SNIFF_BYTES - len(self.head)
            self.head += chunk[:need]
            if len(self.head) < SNIFF_BYTES:
                return True
            self._decide()
            chunk = chunk[need:] if need < len(chunk) else b""
            if self.pickle is not None or self.zip is not None:
                return self._body(memoryview(self.head)) and (not chunk or self._body(chunk)) or more
            return more
        return self._body(chunk) or more

    def _decide(self) -> None:
        self.format = sniff(bytes(self.head), self.rel, self.size)
        if self.format.family == PICKLE and self.owner.scan:
            self.pickle = bytearray()
        elif self.format.family == "zip":
            # Member names tell the format; member bytes are kept only for the scanner.
            scan = self.owner.scan
            self.zip = ZipWalker(lambda name: scan and name.endswith(".pkl"), self._reserve)

    def _body(self, chunk: bytes | memoryview) -> bool:
        if self.zip is not None:
            return self.zip.feed(chunk)
        if self.pickle is not None:
            if not self._reserve(len(chunk)):
                self.pickle_complete = False
                return False
            self.pickle += chunk
            return True
        return False

    def close(self) -> None:
        try:
            if self.owner.formats and self.format is None:
                self._decide()
                if self.pickle is not None or self.zip is not None:
                    self._body(memoryview(self.head))
            facts = self._facts() if self.format is not None else None
            text = bytes(self.text) if self.text is not None else None
            self.owner.record(facts, self.rel, text, self.text_too_large)
        finally:
            self.release()

    def release(self) -> None:
        """Give back the bytes kept for scanning (after the scan, or when the read was abandoned)."""
        self.pickle, self.zip = None, None
        self.owner.budget.release(self.reserved)
        self.reserved = 0

    def _facts(self) -> FileFacts:
        facts = FileFacts(self.rel, self.size, self.format)
        if self.pickle is not None:
            start = _npy_data_offset(bytes(self.head)) if self.format.detail == "numpy object array" else 0
            facts.scans.append((self.rel, scan_pickle(memoryview(self.pickle)[start:], self.rel,
                                                      self.pickle_complete)))
        elif self.zip is not None:
            walker = self.zip
            facts.members = list(walker.members)
            facts.format = zip_family(walker.members)
            if walker.stopped:
                facts.format = Format(facts.format.family, f"{facts.format.detail}; {walker.stopped}")
            if self.owner.scan:
                for name, data in walker.kept.items():
                    if name.endswith(".pkl"):
                        facts.scans.append((f"{self.rel}:{name}", scan_pickle(data, f"{self.rel}:{name}")))
                for name in walker.incomplete:
                    facts.scans.append((f"{self.rel}:{name}", ScanFinding(
                        INCONCLUSIVE, note="member too large to keep within the memory bound")))
        return facts
