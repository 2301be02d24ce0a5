"""The exact engine steps of a resolved commit, as pure data (argv lists and call objects)."""

from __future__ import annotations

import os.path
from collections.abc import Sequence

from backchain.core.graph import Layer
from backchain.core.libvirt_steps import libvirt_steps
from backchain.core.model import CommitRequest, Rebase, Step
from backchain.core.qmp_steps import qmp_steps

__all__ = ["Step", "backing_name_for", "libvirt_steps", "qemu_img_steps", "qmp_steps"]


def backing_name_for(overlay: Layer, base: Layer, *, relative: bool) -> str:
    """The backing name to write into ``overlay`` so that it points to ``base``."""
    if relative:
        return os.path.relpath(base.path, os.path.dirname(overlay.path))
    return base.path


def qemu_img_steps(
    request: CommitRequest,
    top: Layer,
    base: Layer,
    rebased: Sequence[Rebase],
    deleted: Sequence[str],
) -> tuple[Step, ...]:
    """``qemu-img commit -b`` (top is never emptied), a rebase per overlay, verify, delete."""
    commit = ["qemu-img", "commit", "-f", top.format, "-p", "-b", base.path]
    if request.rate:
        commit += ["-r", str(request.rate)]
    commit.append(top.path)
    steps = [Step("commit", tuple(commit), target=base.path)]
    for rebase in rebased:
        overlay_dir = os.path.dirname(rebase.image)
        argv = (
            "qemu-img", "rebase", "-u", "-f", "qcow2",
            "-b", rebase.backing_name, "-F", base.format, rebase.image,
        )  # fmt: skip
        steps.append(Step("rebase", argv, cwd=overlay_dir, target=rebase.image))
    if deleted and request.verify:
        verify = ("qemu-img", "compare", "-p", "-f", top.format, "-F", base.format)
        steps.append(Step("verify", (*verify, top.path, base.path), target=top.path))
    for path in deleted:
        steps.append(Step("delete", ("rm", "-f", "--", path), target=path))
    return tuple(steps)
