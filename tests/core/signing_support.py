"""Shared pieces of the signed-seal tests: a nested model tree, keys, and the model-signing CLI."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core.seal.keys import SigningKey, TrustedKey, generate_key_pair, load_trusted_keys

MODEL_SIGNING_CLI = str(Path(sys.executable).parent / "model_signing")

FILES = {
    "MLmodel": b"flavors:\n  python_function: {}\n",
    "model.pkl": bytes(range(256)) * 64,
    "code/util.py": b"def f():\n    return 1\n",
    "data/deep/nested/weights.bin": b"\x00\x01" * 5000,
    "requirements.txt": b"scikit-learn==1.5.0\n",
}


def write_model(root: Path, files: dict[str, bytes] | None = None) -> Path:
    """Write a model tree (nested folders) under ``root`` and return it."""
    for rel, data in (files or FILES).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@dataclass
class KeyPair:
    """A generated key pair: the loaded private key, its public PEM file, and it as a trusted key."""

    key: SigningKey
    public_path: Path

    @property
    def trusted(self) -> list[TrustedKey]:
        return load_trusted_keys([self.public_path])


def make_key(folder: Path, name: str = "guard") -> KeyPair:
    """A fresh P-256 key pair in ``folder``."""
    key = generate_key_pair(folder / f"{name}.pem", folder / f"{name}.pub.pem")
    return KeyPair(key, folder / f"{name}.pub.pem")


def model_signing_verify(model: Path, signature: Path, public_key: Path,
                         cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``model_signing verify key`` as a third party runs it, in its own process."""
    return subprocess.run([MODEL_SIGNING_CLI, "verify", "key", str(model), "--signature", str(signature),
                           "--public_key", str(public_key)], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def bundle_in_folder(root: Path, tag_value: str) -> Path:
    """The file a folder seal store's ``validation.seal_bundle`` tag names (a path relative to its root)."""
    from core.seal.store import FOLDER_PUBLIC_SCHEME

    assert tag_value.startswith(FOLDER_PUBLIC_SCHEME) and str(root) not in tag_value, tag_value
    return Path(root) / tag_value.removeprefix(FOLDER_PUBLIC_SCHEME)
