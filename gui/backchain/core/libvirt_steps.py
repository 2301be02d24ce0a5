"""The libvirt API calls of a commit through virDomainBlockCommit, as pure data."""

from __future__ import annotations

from collections.abc import Sequence

from backchain.core.graph import Layer
from backchain.core.model import CommitRequest, Step


def libvirt_steps(
    request: CommitRequest,
    chain: Sequence[Layer],
    top: Layer,
    base: Layer,
    deleted: Sequence[str],
    active_commit: bool,
    label: str,
) -> tuple[Step, ...]:
    """One ``virDomainBlockCommit`` call with the flags the plan implies."""
    flags = ["VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES"]
    if request.shallow:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_SHALLOW")
    if deleted:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_DELETE")
    if active_commit:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_ACTIVE")
    if request.keep_relative:
        flags.append("VIR_DOMAIN_BLOCK_COMMIT_RELATIVE")
    call = {
        "call": "virDomainBlockCommit",
        "disk": chain[0].extra.get("disk", label),
        "base": base.extra.get("label", base.path),
        "top": top.extra.get("label", top.path),
        "bandwidth": request.rate,
        "flags": flags,
    }
    return (Step("virDomainBlockCommit", call=call, target=base.path),)
