"""Names that open an image on a chain other than its header's, for qemu-img to compare."""

from __future__ import annotations

import json

from backchain.core.graph import ImageGraph
from backchain.core.model import CommitPlan


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
