"""``geotiler view`` from the command line: URL, host warning, no browser needed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("bokeh")

from geotiler.cli import app


class _FakeLoop:
    def start(self) -> None:
        raise KeyboardInterrupt  # what Ctrl+C does to the running server


class _FakeServer:
    io_loop = _FakeLoop()
    stopped = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        _FakeServer.stopped = True


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_start_view(sources: Any, **options: Any) -> tuple[Any, Any]:
        from geotiler.view.server import RunningView

        seen.update(options, sources=sources)
        url = f"http://127.0.0.1:{options['port']}/"
        state = SimpleNamespace(upload_dir="/tmp/uploads")
        return _FakeServer(), RunningView(url, options["port"], state, lambda: None)

    monkeypatch.setattr("geotiler.view.server.start_view", fake_start_view)
    return seen


def test_view_prints_the_url_and_binds_localhost(
    runner: CliRunner, started: dict[str, Any], tiny_dataset: Any
) -> None:
    result = runner.invoke(
        app, ["view", str(tiny_dataset.scene), "--map", str(tiny_dataset.map), "--port", "8123"]
    )
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/" in result.output
    assert started["host"] == "127.0.0.1"
    assert started["sources"].map == tiny_dataset.map
    assert "warning" not in result.output
    assert _FakeServer.stopped


def test_view_on_all_interfaces_warns(
    runner: CliRunner, started: dict[str, Any], tiny_dataset: Any
) -> None:
    result = runner.invoke(app, ["view", str(tiny_dataset.scene), "--host", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output and "0.0.0.0" in result.output
    assert started["host"] == "0.0.0.0"


def test_a_busy_port_is_one_line(runner: CliRunner, tiny_dataset: Any) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["view", str(tiny_dataset.scene), "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output
