"""The exact qemu-img steps of a resolved commit, as pure data (argv lists)."""

from __future__ import annotations

import os.path
from collections.abc import Sequence

from backchain.core.graph import ImageGraph, Layer
from backchain.core.model import CommitPlan, Step, StepKind
from backchain.engines.files.views import old_view_spec
from backchain.engines.process import qemu_img_binary


def object_args(secrets: tuple[str, ...]) -> list[str]:
    """``--object secret,...`` arguments: a secret is passed by file, never as plain data."""
    args: list[str] = []
    for spec in secrets:
        args += ["--object", spec]
    return args


def secret_id(secrets: tuple[str, ...]) -> str | None:
    """The id of the (first) ``--object secret,id=ID,...`` given, or None."""
    for spec in secrets:
        for part in spec.split(",")[1:]:
            if part.startswith("id="):
                return part[len("id=") :]
    return None


def image_opts(chain: Sequence[Layer], key: str) -> str:
    """An ``--image-opts`` spec that opens ``chain[0]`` with the secret of every encrypted layer.

    The encrypted layers below it are reached through ``backing.``: qemu-img cannot open an
    encrypted backing file otherwise (iotest 198).
    """
    path = chain[0].path.replace(",", ",,")  # a comma in a value is written twice
    parts = [f"driver={chain[0].format}", f"file.filename={path}"]
    parts += ["backing." * depth + f"encrypt.key-secret={key}"
              for depth, layer in enumerate(chain) if layer.encrypted]  # fmt: skip
    return ",".join(parts)


def encrypted_base_needs_b(plan: CommitPlan, graph: ImageGraph) -> Layer | None:
    """An encrypted layer at or below base when base is not top's own backing file, or None.

    With ``--image-opts``, an encrypted base's name becomes a ``json:`` string that ``-b`` cannot
    match; only ``-d`` (base = top's backing file) works then.
    """
    chain = graph.chain(plan.top)
    below = chain[[layer.path for layer in chain].index(plan.base) :]
    if len(chain) > 1 and chain[1].path == plan.base:
        return None
    return next((layer for layer in below if layer.encrypted), None)


def _commit_argv(plan: CommitPlan, graph: ImageGraph, secrets: tuple[str, ...]) -> list[str]:
    top, base = graph.layer(plan.top), graph.layer(plan.base)
    key = secret_id(secrets)
    chain = graph.chain(top.path)
    argv = [qemu_img_binary(), "commit", *object_args(secrets)]
    if key is None or not any(layer.encrypted for layer in chain):
        argv += ["-f", top.format, "-p", "-b", base.path]
        opened = [top.path]
    else:
        # -d keeps top as it is, which -b implies; -b cannot name an encrypted base.
        immediate = len(chain) > 1 and chain[1].path == base.path
        argv += ["-p", *(["-d"] if immediate else ["-b", base.path])]
        opened = ["--image-opts", image_opts(chain, key)]
    if plan.request.rate:
        argv += ["-r", str(plan.request.rate)]
    return argv + opened


def _rebase_argv(overlay: Layer, name: str, fmt: str, secrets: tuple[str, ...]) -> tuple[str, ...]:
    head = (qemu_img_binary(), "rebase", *object_args(secrets), "-u")
    key = secret_id(secrets)
    if key is not None and overlay.encrypted:
        return (*head, "-b", name, "-F", fmt, "--image-opts", image_opts([overlay], key))
    return (*head, "-f", "qcow2", "-b", name, "-F", fmt, overlay.path)


def _verify_argv(
    top: Layer, base: Layer, graph: ImageGraph, secrets: tuple[str, ...]
) -> tuple[str, ...]:
    head = (qemu_img_binary(), "compare", *object_args(secrets), "-p")
    key = secret_id(secrets)
    tops, bases = graph.chain(top.path), graph.chain(base.path)
    if key is not None and any(layer.encrypted for layer in tops):
        return (*head, "--image-opts", image_opts(tops, key), image_opts(bases, key))
    return (*head, "-f", top.format, "-F", base.format, top.path, base.path)


def commit_steps(
    plan: CommitPlan, graph: ImageGraph, secrets: tuple[str, ...] = ()
) -> tuple[Step, ...]:
    """``qemu-img commit -b`` (top is never emptied), a rebase per overlay, verify, delete."""
    top, base = graph.layer(plan.top), graph.layer(plan.base)
    steps = [Step(StepKind.COMMIT, tuple(_commit_argv(plan, graph, secrets)), target=base.path)]
    for rebase in plan.rebased:
        argv = _rebase_argv(graph.layer(rebase.image), rebase.backing_name, base.format, secrets)
        steps.append(Step(StepKind.REBASE, argv, cwd=os.path.dirname(rebase.image),
                          target=rebase.image))  # fmt: skip
    if plan.deleted and plan.request.verify:
        steps.append(Step(StepKind.VERIFY, _verify_argv(top, base, graph, secrets),
                          target=top.path))  # fmt: skip
    for path in plan.deleted:
        steps.append(Step(StepKind.DELETE, ("rm", "-f", "--", path), target=path))
        data_file = graph.layer(path).data_file
        if data_file is not None:  # a deleted layer's data would otherwise stay behind
            steps.append(Step(StepKind.DELETE, ("rm", "-f", "--", data_file), target=data_file))
    return tuple(steps)


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
