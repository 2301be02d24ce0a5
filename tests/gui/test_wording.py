"""The window's words: people first, with the fix; the engine's or planner's text kept aside."""

from __future__ import annotations

import os

from backchain.ui.wording import humane_error, humane_plan_error, lock_refusal


def test_planner_refusals_say_what_to_pick_and_keep_the_original_for_details() -> None:
    original = "could not find image '/i/snap2.qcow2' beneath '/i/snap1.qcow2' in chain for '/i/a'"
    words, details = humane_plan_error(original)
    assert words == "base must be below top: pick a lower layer as base, or a higher one as top"
    assert details == original
    words, _ = humane_plan_error("base 'vda[2]' is not immediately below 'vda[0]' in chain for 'x'")
    assert words.startswith("with SHALLOW, base must be the layer just below top")
    assert humane_plan_error("something new") == ("something new", "")


def test_a_corrupt_header_and_a_dead_socket_read_as_people_say_them() -> None:
    words, details = humane_error("/i/x.qcow2: has an unsupported qcow2 version 1253200887")
    assert words == "/i/x.qcow2: not a valid qcow2 image (header version 1253200887)"
    assert "unsupported" in details
    # A real future version (4) is still reported as unsupported, not as garbage.
    assert humane_error("/i/x.qcow2: has an unsupported qcow2 version 4")[1] == ""
    words, details = humane_error(
        "cannot connect to QEMU at /run/vm.sock: [Errno 2] No such file or directory"
    )
    assert words.startswith("no QEMU is listening at /run/vm.sock")
    assert "Errno" not in words and "Errno 2" in details


def test_a_lock_held_by_this_process_is_this_windows_own_job() -> None:
    me = os.getpid()
    text = (
        f"/i/base.qcow2 is being changed by another Backchain process {me} "
        f"(python -m backchain) since 10:02:03: a commit of a into b. Wait until it ends."
    )
    assert lock_refusal(text, me) == (
        "/i/base.qcow2 is being changed by this window's own running job: a commit of a into b. "
        "Wait until it ends."
    )
    other = text.replace(str(me), str(me + 1))
    assert lock_refusal(other, me) == other
