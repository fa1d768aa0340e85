"""The viewer in a browser: the server refuses what it should (no token beyond loopback, paths,
huge messages, floods of connections, a client that never reads) and keeps serving; a real
headless Chromium sees the game and the Q-values, drives the controls, shares one stream with
a second page, and watches train-dqn and train-gan while they train."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.test_watch import save_untrained_checkpoint
from viewer.config import WatchConfig
from viewer.web import MAX_CLIENTS, WebServer, WebViewer, is_loopback

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


@pytest.fixture
def server() -> Iterator[WebServer]:
    running = WebServer("127.0.0.1", free_port(), token="s3cret").start()
    yield running
    running.stop()


# ----------------------------------------------------------------------------- the server


def test_beyond_loopback_a_token_is_required() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert WebServer("127.0.0.1", 0).token is None  # loopback: no token needed
    wide = WebServer("0.0.0.0", 0)  # not started: tests bind loopback only
    assert wide.token is not None and len(wide.token) >= 20
    assert wide.url.endswith(f"?token={wide.token}")


def test_the_token_is_checked(server: WebServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert get(f"{base}/")[0] == 403
    assert get(f"{base}/?token=wrong")[0] == 403
    status, page = get(f"{base}/?token=s3cret")
    assert status == 200 and "<canvas" in page
    assert get(f"{base}/ws")[0] == 403


@pytest.mark.parametrize(
    "path",
    ["/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/page.html",
     "/viewer/web.py", "/etc/passwd", "/static/../../run.py"],
)  # fmt: skip
def test_only_the_page_and_the_stream_are_served(server: WebServer, path: str) -> None:
    status, body = get(f"http://127.0.0.1:{server.port}{path}?token=s3cret")
    assert status == 404 and "root:" not in body and "import" not in body


def _socket_url(server: WebServer) -> str:
    return f"http://127.0.0.1:{server.port}/ws?token=s3cret"


def test_huge_messages_floods_and_a_client_that_never_reads(server: WebServer) -> None:
    import aiohttp

    async def scenario() -> dict[str, object]:
        results: dict[str, object] = {}
        async with aiohttp.ClientSession() as client:
            # A 10 MB message: the connection is closed, nothing else happens.
            huge = await client.ws_connect(_socket_url(server), max_msg_size=0)
            try:
                await huge.send_str("x" * 10_000_000)
                results["huge"] = (await huge.receive(timeout=10)).type
            except ConnectionError:  # the server hung up while it was still being sent
                results["huge"] = aiohttp.WSMsgType.CLOSED
            # 200 connections that say nothing over plain TCP, and sockets beyond the limit.
            idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
            sockets = []
            refused = 0
            for _ in range(MAX_CLIENTS + 10):
                try:
                    sockets.append(await client.ws_connect(_socket_url(server)))
                except aiohttp.WSServerHandshakeError as error:
                    refused += error.status == 503
            results["refused"] = refused
            for opened in sockets:
                await opened.close()
            # A client that never reads, beside one that does.
            stalled = await client.ws_connect(_socket_url(server))
            await asyncio.sleep(0.3)
            reader = await client.ws_connect(_socket_url(server))
            await asyncio.sleep(0.3)
            # A slow page: 300 states are published while it reads nothing; then it reads.
            for index in range(300):
                server.publish({"index": index, "padding": "y" * 400_000})
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.5)
            seen = []
            while not seen or seen[-1] != 299:
                message = await reader.receive(timeout=10)
                seen.append(json.loads(message.data)["index"])
            results["reader_got_the_newest"] = seen[-1] == 299
            results["slow_reader_got"] = len(seen)
            results["watchers"] = server.watchers
            await stalled.close()
            await reader.close()
            for raw in idle:
                raw.close()
        return results

    results = asyncio.run(scenario())

    assert results["huge"] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert results["refused"] >= 10
    assert results["reader_got_the_newest"]
    # It was not sent the 300: the states it had no time for were replaced by newer ones
    # (a few were already in the socket's buffers).
    assert results["slow_reader_got"] < 100, results["slow_reader_got"]
    # The server is still up and serving after all of it.
    assert get(f"http://127.0.0.1:{server.port}/?token=s3cret")[0] == 200


def test_controls_from_a_page_reach_the_viewer_and_nothing_else(server: WebServer) -> None:
    import aiohttp

    async def scenario() -> None:
        async with aiohttp.ClientSession() as client:
            page = await client.ws_connect(_socket_url(server))
            for text in (
                '{"command": "pause"}', '{"command": "rm -rf /"}', "not json", "[1, 2]",
                '{"command": "saliency"}',
            ):  # fmt: skip
                await page.send_str(text)
            await asyncio.sleep(0.5)
            await page.close()

    asyncio.run(scenario())
    taken = []
    while not server.commands.empty():
        taken.append(server.commands.get_nowait())
    assert taken == ["pause", "saliency"]


# ----------------------------------------------------------------------------- in a browser

needs_browser = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def viewer(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WebViewer]:
    head = getattr(request, "param", {})  # build_q_network's head options
    checkpoint = save_untrained_checkpoint(tmp_path / "policy.pt", step=4321, **head)
    cfg = WatchConfig(checkpoint=str(checkpoint), web=True, port=free_port(), fps=30)
    running = WebViewer(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop.is_set,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while running.server._loop is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield running
    stop.set()
    thread.join(timeout=20)


def test_the_stream_carries_the_game_to_a_client_without_a_browser(viewer) -> None:
    """An aiohttp client on /ws gets what the page draws: the frame, one Q-value per action,
    the action taken, and game steps that move on."""
    import aiohttp

    async def read(count: int) -> list[dict]:
        async with (
            aiohttp.ClientSession() as client,
            client.ws_connect(f"http://127.0.0.1:{viewer.server.port}/ws") as socket_,
        ):
            return [json.loads((await socket_.receive(timeout=20)).data) for _ in range(count)]

    states = asyncio.run(read(20))
    first, last = states[0], states[-1]
    assert first["env_id"] == "Playground/Catch-v0" and first["training_step"] == 4321
    assert first["actions"] == ["NOOP", "LEFT", "RIGHT"]
    assert all(len(state["q_values"]) == 3 and 0 <= state["action"] < 3 for state in states)
    assert first["frame"].startswith("data:image/")
    assert (last["games"], last["game_step"]) != (first["games"], first["game_step"])


def _state(page) -> dict:
    return page.evaluate("window.viewerState()")


def _wait(page, condition: str, timeout: float = 20_000) -> None:
    page.wait_for_function(condition, timeout=timeout)


@needs_browser
def test_the_page_shows_the_game_the_values_and_the_controls_act(browser, viewer) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"http://127.0.0.1:{viewer.server.port}/")
    _wait(page, "window.viewerState() && window.viewerState().frames > 3")
    assert page.inner_text("#title") == "Playground/Catch-v0"
    assert page.inner_text("#training-step") == "4,321 steps"
    labels = page.eval_on_selector_all("#q-values .q", "rows => rows.map(r => r.dataset.action)")
    assert labels == ["NOOP", "LEFT", "RIGHT"]
    assert page.eval_on_selector_all("#q-values .q.chosen", "rows => rows.length") == 1
    assert not page.is_visible("#distribution")  # a Q-value head has no distribution

    # Pause from the page; then the values it received are the network's own.
    page.click("button[data-command=pause]")
    _wait(page, "window.viewerState().paused === true")
    time.sleep(0.5)
    session = viewer.session
    state = _state(page)
    with torch.no_grad():
        own = session.network(torch.as_tensor(session.observation)[None])[0]
    assert state["frames"] == session.frames
    assert state["q_values"] == pytest.approx(own.tolist(), abs=1e-3)
    shown = page.eval_on_selector_all("#q-values .value", "cells => cells.map(c => c.textContent)")
    assert shown == [f"{0.0 if abs(v) < 0.005 else v:.2f}" for v in own.tolist()]

    # One step while paused, speed, epsilon, saliency: each button acts once.
    frames = state["frames"]
    page.click("button[data-command=step]")
    _wait(page, f"window.viewerState().frames === {frames + 1}")
    speed = state["speed"]
    page.click("button[data-command=faster]")
    _wait(page, f"window.viewerState().speed > {speed}")
    page.keyboard.press("e")  # the same keys as the window
    _wait(page, f"window.viewerState().epsilon !== {state['epsilon']}")
    page.click("button[data-command=saliency]")
    _wait(page, "window.viewerState().saliency === true")

    # The game is drawn: the canvas holds the 84 x 84 frame, with non-black pixels.
    lit = page.evaluate(
        """() => { const c = document.getElementById('game');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let lit = 0; for (let i = 0; i < d.length; i += 4) lit += d[i] + d[i+1] + d[i+2] > 60;
                   return [c.width, c.height, lit]; }"""
    )
    assert lit[:2] == [84, 84] and lit[2] > 50
    with page.expect_download() as download:
        page.click("#screenshot")
    assert download.value.suggested_filename.endswith(".png")
    page.close()


@needs_browser
@pytest.mark.parametrize("viewer", [{"head": "c51", "atoms": 21}], indirect=True)
def test_the_page_draws_a_distributional_heads_returns(browser, viewer) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"http://127.0.0.1:{viewer.server.port}/")
    _wait(page, "window.viewerState() && window.viewerState().frames > 3")
    page.click("button[data-command=pause]")
    _wait(page, "window.viewerState().paused === true")
    time.sleep(0.5)
    state = _state(page)
    shown = state["distribution"]
    assert shown["kind"] == "c51" and len(shown["mass"]) == 21
    assert shown["mean"] == pytest.approx(state["q_values"][state["action"]], abs=1e-3)
    assert sum(shown["mass"]) == pytest.approx(1.0, abs=1e-3)
    assert page.is_visible("#distribution")
    title = page.inner_text("#distribution-title")
    assert title == f"RETURNS OF {state['actions'][state['action']]} (C51)"
    assert page.eval_on_selector_all("#histogram .mass", "bars => bars.length") == 21
    assert (
        page.inner_text("#returns-low") == "-10.00" and page.inner_text("#returns-high") == "10.00"
    )
    page.close()


@needs_browser
def test_a_second_page_sees_the_same_stream(browser, viewer) -> None:
    first, second = browser.new_page(), browser.new_page()
    for page in (first, second):
        page.goto(f"http://127.0.0.1:{viewer.server.port}/")
        _wait(page, "window.viewerState() && window.viewerState().frames > 2")
    assert viewer.server.watchers == 2
    first.click("button[data-command=pause]")
    _wait(second, "window.viewerState().paused === true")  # the second page sees it too
    time.sleep(0.5)
    one, two = _state(first), _state(second)
    assert one["frames"] == two["frames"] and one["q_values"] == two["q_values"]
    assert one["frame"] == two["frame"]  # the same picture
    first.close()
    second.close()


def _start(command: list[str]) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), *command],
        cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _open_when_served(browser, port: int, process: subprocess.Popen):
    page = browser.new_page()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            page.goto(f"http://127.0.0.1:{port}/", timeout=5_000)
            return page
        except Exception:
            assert process.poll() is None, process.stdout.read()[-2000:]
            time.sleep(0.5)
    raise AssertionError("the page was never served")


@needs_browser
@pytest.mark.slow
def test_train_dqn_watch_web_updates_while_it_trains(browser, tmp_path: Path) -> None:
    port = free_port()
    process = _start([
        "train-dqn", "--env-id", "Playground/Catch-v0", "--total-steps", "12000",
        "--watch", "web", "--watch-port", str(port), "--runs-dir", str(tmp_path),
        "--run-name", "watched", "--no-progress", "--device", "cpu",
    ])  # fmt: skip
    try:
        page = _open_when_served(browser, port, process)
        _wait(page, "window.viewerState() && window.viewerState().frames > 3", 60_000)
        first = _state(page)
        # New weights arrive (training goes on), the curves come from the run's own logs.
        _wait(page, f"window.viewerState().training_step > {first['training_step']}", 90_000)
        _wait(page, "'charts/episodic_return' in (window.viewerState().curves || {})", 60_000)
        assert page.is_visible("#charts")
        assert "charts/epsilon" in _state(page)["curves"]
        page.close()
        assert process.wait(timeout=300) == 0
    finally:
        process.kill()
    assert (tmp_path / "watched" / "latest.pt").is_file()


@needs_browser
@pytest.mark.slow
def test_train_gan_watch_web_shows_the_samples_as_they_change(browser, tmp_path: Path) -> None:
    port = free_port()
    process = _start([
        "train-gan", "--steps", "400", "--sample-every", "20", "--metric-every", "0",
        "--log-every", "10", "--watch", "web", "--watch-port", str(port),
        "--runs-dir", str(tmp_path), "--run-name", "gan", "--no-progress", "--device", "cpu",
    ])  # fmt: skip
    try:
        page = _open_when_served(browser, port, process)
        _wait(
            page,
            "(window.viewerState() || {}).images && window.viewerState().images['samples/fixed_noise']",
            90_000,
        )
        first = _state(page)["images"]["samples/fixed_noise"]["step"]
        _wait(page, f"window.viewerState().images['samples/fixed_noise'].step > {first}", 90_000)
        state = _state(page)
        assert "samples/real" in state["images"]
        assert {"losses/d_loss", "losses/g_loss", "gan/d_real", "gan/d_fake"} <= set(
            state["curves"]
        )
        assert page.is_visible("#images img")
        page.close()
        assert process.wait(timeout=300) == 0
    finally:
        process.kill()


def test_watch_settings_are_checked() -> None:
    from playground.errors import UserError
    from viewer.config import validate

    for changes, message in [
        ({"human": True, "web": True, "env_id": "Playground/Snake-v0"}, "drop --web"),
        ({"web": True, "env_id": "Playground/Catch-v0", "port": 70000}, "--port"),
        ({"web": True, "run_dir": "/no/such/run"}, "--run-dir: /no/such/run not found"),
    ]:
        with pytest.raises(UserError, match=message):
            validate(dataclasses.replace(WatchConfig(), **changes))
