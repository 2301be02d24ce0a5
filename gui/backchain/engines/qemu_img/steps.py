"""The exact qemu-img steps of a resolved commit, as pure data (argv lists)."""

from __future__ import annotations

import json
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


def old_view_spec(plan: CommitPlan, graph: ImageGraph) -> str:
    """Top opened on its old backing file: what top read before the pull (a ``json:`` name).

    After the pull, top over its old chain must read exactly as top alone over base: then no
    data top needs is left only in the removed layers, and they can be deleted.
    """
    top = graph.layer(plan.top)
    old = graph.layer(plan.merged[0])
    spec = {
        "driver": top.format,
        "file": {"driver": "file", "filename": top.path},
        "backing": {"driver": old.format, "file": {"driver": "file", "filename": old.path}},
    }
    return "json:" + json.dumps(spec, separators=(",", ":"))


def pull_steps(
    plan: CommitPlan, graph: ImageGraph, secrets: tuple[str, ...] = ()
) -> tuple[Step, ...]:
    """``qemu-img rebase -p`` in safe mode (it copies, then re-points), verify, delete.

    ``-b ""`` makes top standalone; a relative backing name is resolved from top's directory,
    so the step runs there. ``-t writethrough``: with qemu-img's default writeback cache the new
    backing name reaches the header before the L2 tables that point to the copied clusters, and
    a kill in that window (seconds, while the final flush runs) loses data; writethrough writes
    the tables with each write, so top stays on its old chain until everything is on disk.
    """
    qemu_img = qemu_img_binary()
    top = graph.layer(plan.top)
    rebase = [qemu_img, "rebase", *object_args(secrets), "-f", top.format, "-t", "writethrough"]
    rebase.append("-p")
    if plan.base:
        rebase += ["-b", plan.rebased[0].backing_name, "-F", graph.layer(plan.base).format]
    else:
        rebase += ["-b", ""]
    rebase.append(top.path)
    steps = [Step(StepKind.PULL, tuple(rebase), cwd=os.path.dirname(top.path), target=top.path)]
    if plan.deleted and plan.request.verify:
        verify = (qemu_img, "compare", *object_args(secrets), "-p", "-f", top.format,
                  top.path, old_view_spec(plan, graph))  # fmt: skip
        steps.append(Step(StepKind.VERIFY, verify, target=top.path))
    for path in plan.deleted:
        steps.append(Step(StepKind.DELETE, ("rm", "-f", "--", path), target=path))
    return tuple(steps)
