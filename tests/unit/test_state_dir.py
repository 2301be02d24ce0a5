"""The state directory found without platformdirs is the one platformdirs gives."""

from __future__ import annotations

import platformdirs
import pytest

from backchain.engines import state


@pytest.mark.parametrize(
    ("xdg", "home"),
    [
        (None, "/home/someone"),
        ("/var/xdg-state", "/home/someone"),
        ("relative/state", "/home/someone"),
        ("", "/root"),
        ("/srv/state/", "/home/someone/"),
    ],
)
def test_the_state_dir_is_platformdirs_own(
    monkeypatch: pytest.MonkeyPatch, xdg: str | None, home: str
) -> None:
    monkeypatch.delenv(state.STATE_ENV, raising=False)
    monkeypatch.setenv("HOME", home)
    if xdg is None:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_STATE_HOME", xdg)
    assert state.state_dir() == platformdirs.user_state_dir("backchain")


def test_a_relative_home_is_left_to_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(state.STATE_ENV, raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", "not/absolute")
    assert state._xdg_state_dir() is None
    assert state.state_dir() == platformdirs.user_state_dir("backchain")
