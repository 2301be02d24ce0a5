"""The exact qemu-img steps of a resolved commit, as pure data (argv lists)."""

from __future__ import annotations

import os.path

from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan, Step, StepKind
from backchain.engines.process import qemu_img_binary


def object_args(secrets: tuple[str, ...]) -> list[str]:
    """``--object secret,...`` arguments: a secret is passed by file, never as plain data."""
    args: list[str] = []
    for spec in secrets:
        args += ["--object", spec]
    return args


def commit_steps(
    plan: CommitPlan, graph: ImageGraph, secrets: tuple[str, ...] = ()
) -> tuple[Step, ...]:
    """``qemu-img commit -b`` (top is never emptied), a rebase per overlay, verify, delete."""
    request = plan.request
    qemu_img = qemu_img_binary()
    top, base = graph.layer(plan.top), graph.layer(plan.base)
    commit = [qemu_img, "commit", *object_args(secrets), "-f", top.format, "-p", "-b", base.path]
    if request.rate:
        commit += ["-r", str(request.rate)]
    commit.append(top.path)
    steps = [Step(StepKind.COMMIT, tuple(commit), target=base.path)]
    for rebase in plan.rebased:
        overlay_dir = os.path.dirname(rebase.image)
        argv = (
            qemu_img, "rebase", *object_args(secrets), "-u", "-f", "qcow2",
            "-b", rebase.backing_name, "-F", base.format, rebase.image,
        )  # fmt: skip
        steps.append(Step(StepKind.REBASE, argv, cwd=overlay_dir, target=rebase.image))
    if plan.deleted and request.verify:
        verify = (qemu_img, "compare", *object_args(secrets), "-p", "-f", top.format)
        verify += ("-F", base.format, top.path, base.path)
        steps.append(Step(StepKind.VERIFY, verify, target=top.path))
    for path in plan.deleted:
        steps.append(Step(StepKind.DELETE, ("rm", "-f", "--", path), target=path))
    return tuple(steps)
