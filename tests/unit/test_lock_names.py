"""Lock file names stay what hashlib's SHA-256 of the real path gives, whatever computes it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from backchain.engines.image_locks import lock_path


def test_lock_names_are_the_sha256_of_the_real_path(tmp_path: Path) -> None:
    image = tmp_path / "base \u00e9\udcff.qcow2"  # a name that is not valid UTF-8, too
    real = os.path.realpath(image)
    digest = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    assert os.path.basename(lock_path(str(image))) == digest + ".lock"
    link = tmp_path / "link.qcow2"
    image.write_bytes(b"")
    link.symlink_to(image)
    assert lock_path(str(link)) == lock_path(str(image))
