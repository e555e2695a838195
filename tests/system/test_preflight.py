"""Where the container cannot boot, the tier says why: skipped on a workstation, failed in CI."""

from __future__ import annotations

import pytest

from . import container as ct
from .conftest import _cannot


def test_a_missing_tool_is_named_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without systemd-nspawn the reason names the Debian package to install."""
    monkeypatch.setattr(ct.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ct.shutil, "which", lambda tool: None if tool == "systemd-nspawn" else tool)
    with pytest.raises(ct.CannotBoot, match="missing systemd-nspawn .*systemd-container"):
        ct.preflight()


def test_not_root_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reason for a user without root says that root is needed."""
    monkeypatch.setattr(ct.os, "geteuid", lambda: 1000)
    with pytest.raises(ct.CannotBoot, match="need root"):
        ct.preflight()


def test_ci_fails_where_a_workstation_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI=true turns "cannot boot" into a failure; without it, a skip carrying the reason."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI.*no cgroups"):
        _cannot("no cgroups")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no cgroups"):
        _cannot("no cgroups")
