"""The viewer in a browser: a small aiohttp server that streams what a `ViewerSession` shows (and
a run's training curves and images) to every page that watches, and takes the page's controls.

    python run.py watch --checkpoint runs/<name> --web              # http://127.0.0.1:8765/
    python run.py train-dqn --env-id Playground/Catch-v0 --watch web

aiohttp serves both the page and a WebSocket from one small, well-kept package, on its own
thread and event loop, so the session (or a training run) never waits for a slow browser.

Safe by default: it binds 127.0.0.1 unless `--host` says otherwise; beyond loopback every
request needs the random token printed in the URL (as Jupyter does); it serves its page and its
stream only (no file is ever served by path); messages over 64 KiB close the connection; a
client that does not keep up gets the newest state only (older ones are dropped, never queued);
at most 64 pages at once. The controls act on the viewer's own copy of the game, never on a
training run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import ipaddress
import json
import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from playground import tags
from playground.logger import EventReader

PAGE = Path(__file__).with_name("page.html")
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CLIENTS = 64
IDLE_POLL_SECONDS = 0.25  # beside a training run, how often to look for a page while none is open
COMMANDS = ("pause", "step", "faster", "slower", "epsilon", "saliency")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def png_data_url(frame: np.ndarray) -> str:
    """An (H, W[, 3]) uint8 image as a data: URL (PNG)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class WebServer:
    """Serves the page and broadcasts the newest state to every connected page.

    `publish(state)` hands a JSON-able dict to all pages (the newest replaces any a slow page
    has not taken yet); `commands` is a thread-safe queue of the page's control names; `watchers`
    says how many pages are open, so the caller encodes frames only while someone watches."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
        self.host, self.port = host, port
        # Beyond loopback nobody gets in without the token; on loopback it is not needed.
        self.token = (
            token
            if token is not None
            else (None if is_loopback(host) else secrets.token_urlsafe(18))
        )
        self.commands: queue.Queue[str] = queue.Queue(maxsize=256)
        self.messages_sent = 0
        self.bytes_sent = 0
        self._clients: dict[Any, asyncio.Queue] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: Any = None
        self._error: BaseException | None = None
        # The page's chart and image captions come from playground.tags, like the curves.
        self._page = (
            PAGE.read_text()
            .replace("__CHARTS__", json.dumps(tags.WEB_CHARTS))
            .replace("__IMAGES__", json.dumps(tags.WEB_IMAGES))
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{shown}:{self.port}/{query}"

    @property
    def watchers(self) -> int:
        return len(self._clients)

    def start(self) -> WebServer:
        self._thread = threading.Thread(target=self._serve, name="web-viewer", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            from playground.errors import UserError

            raise UserError(
                f"cannot serve the viewer on {self.host}:{self.port} ({self._error}); "
                "pick another --port"
            )
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(Exception):  # shutting down; nothing left to tell
                future.result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _serve(self) -> None:
        from aiohttp import web

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        app.router.add_get("/", self._page_handler)
        app.router.add_get("/ws", self._socket_handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        try:
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port, backlog=256)
            loop.run_until_complete(site.start())
            if self.port == 0:  # the port the system chose
                self.port = self._runner.addresses[0][1]
        except OSError as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    # ------------------------------------------------------------------ handlers

    def _allowed(self, request: Any) -> bool:
        return self.token is None or secrets.compare_digest(
            request.query.get("token", ""), self.token
        )

    async def _page_handler(self, request: Any) -> Any:
        from aiohttp import web

        if not self._allowed(request):
            return web.Response(
                status=403, text="a token is needed: open the URL the viewer printed"
            )
        return web.Response(
            text=self._page,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    async def _socket_handler(self, request: Any) -> Any:
        from aiohttp import WSMsgType, web

        if not self._allowed(request):
            return web.Response(status=403, text="a token is needed")
        if len(self._clients) >= MAX_CLIENTS:
            return web.Response(status=503, text="too many viewers")
        socket = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=20)
        await socket.prepare(request)
        mailbox: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._clients[socket] = mailbox
        sender = asyncio.ensure_future(self._send_newest(socket, mailbox))
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self._take_command(message.data)
                elif message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            self._clients.pop(socket, None)
            sender.cancel()
        return socket

    async def _send_newest(self, socket: Any, mailbox: asyncio.Queue) -> None:
        while not socket.closed:
            text = await mailbox.get()
            try:
                await asyncio.wait_for(socket.send_str(text), timeout=10)
            except (TimeoutError, ConnectionError, RuntimeError):
                await socket.close()  # a page that takes nothing for 10 s is let go
                return
            self.messages_sent += 1
            self.bytes_sent += len(text)

    def _take_command(self, data: str) -> None:
        try:
            command = json.loads(data).get("command")
        except (ValueError, AttributeError):
            return
        if command in COMMANDS:
            with contextlib.suppress(queue.Full):  # a flood of clicks: the newest are dropped
                self.commands.put_nowait(command)

    # ------------------------------------------------------------------ publishing

    def publish(self, state: dict[str, Any]) -> None:
        """Send `state` to every page; a page still busy with an older one gets this instead."""
        if self._loop is None or not self._clients:
            return
        text = json.dumps(state)
        self._loop.call_soon_threadsafe(self._deliver, text)

    def _deliver(self, text: str) -> None:
        for mailbox in list(self._clients.values()):
            if mailbox.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    mailbox.get_nowait()  # drop the older state
            mailbox.put_nowait(text)


class RunCurves:
    """The training curves (and images) of a run folder, read from its TensorBoard events a
    few seconds apart: what `--watch web` shows beside the game or the GAN's samples."""

    SCALARS = tuple(tags.WEB_CHARTS)
    IMAGES = tuple(tags.WEB_IMAGES)
    POINTS = 300  # per curve, the newest

    def __init__(self, run_dir: str | Path, every: float = 3.0) -> None:
        self.run_dir = Path(run_dir)
        self._events = EventReader(self.run_dir)
        self._every = every
        self._next = 0.0
        self.snapshot: dict[str, Any] = {"curves": {}, "images": {}, "run": self.run_dir.name}

    def refresh(self) -> dict[str, Any]:
        """The newest curves and images (read again at most every few seconds)."""
        now = time.monotonic()
        if now < self._next:
            return self.snapshot
        self._next = now + self._every
        try:
            self._events.reload()
        except Exception:  # an event file being written; next time
            return self.snapshot
        curves = {
            tag: [[step, value] for step, value, _ in points[-self.POINTS :]]
            for tag in self.SCALARS
            if (points := self._events.scalars(tag))
        }
        images = {}
        for tag in self.IMAGES:
            if kept := self._events.images(tag):
                step, png = kept[-1]
                images[tag] = {
                    "step": step,
                    "src": "data:image/png;base64," + base64.b64encode(png).decode(),
                }
        self.snapshot = {"curves": curves, "images": images, "run": self.run_dir.name}
        return self.snapshot


def _distribution(session: Any) -> dict[str, Any] | None:
    """The chosen action's return distribution, as the pygame panel draws it (None unless the
    network is distributional)."""
    distribution = session.distribution
    if distribution is None:
        return None
    returns, mass = distribution.histogram(int(session.action))
    return {
        "kind": distribution.kind,
        "returns": [round(float(value), 4) for value in returns],
        "mass": [round(float(value), 5) for value in mass],
        "mean": round(float(session.q_values[int(session.action)]), 4),
    }


def session_state(session: Any, frame_url: Callable[[], str | None]) -> dict[str, Any]:
    """What the page draws of a `ViewerSession` (the pygame panel's content)."""
    scores = session.scores
    return {
        "env_id": session.env_id,
        "checkpoint": (
            f"{session.checkpoint_path.parent.name}/{session.checkpoint_path.name}"
            if session.checkpoint_path is not None
            else None
        ),
        "training_step": session.training_step,
        "actions": session.action_labels,
        "q_values": [round(float(value), 4) for value in session.q_values],
        "action": int(session.action),
        "distribution": _distribution(session),
        "score": session.episode_score,
        "game": session.episode_count + (0 if session.episode_over else 1),
        "game_step": session.episode_steps,
        "games": len(scores),
        "mean_score": float(np.mean(scores)) if scores else None,
        "last_score": scores[-1] if scores else None,
        "epsilon": session.epsilon,
        "speed": session.speed,
        "steps_per_second": round(session.measured_fps(), 1),
        "paused": session.paused,
        "saliency": session.saliency_on,
        "game_over": session.episode_over,
        "frames": session.frames,
        "message": session.message,
        "frame": frame_url(),
    }


class WebViewer:
    """`watch --web`: the game of a `ViewerSession` (when there is a checkpoint or a game) and
    the curves and images of `--run-dir` (what `train-dqn / train-gan --watch web` show),
    published to every page, with the pages' controls applied to the session.

    `run(stop)` loops until `stop()` is true, the session's --episodes / --max-steps are done,
    or (for a viewer a trainer started) the trainer ends."""

    def __init__(self, cfg: Any) -> None:
        from viewer.config import validate
        from viewer.session import ViewerSession

        validate(cfg)
        self.cfg = cfg
        self.session = ViewerSession(cfg) if (cfg.checkpoint or cfg.env_id) else None
        self.curves = RunCurves(cfg.run_dir) if cfg.run_dir else None
        self.server = WebServer(cfg.host, cfg.port)
        self.actions: dict[str, Callable[[], None]] = {}
        if self.session is not None:
            self.actions = {
                "pause": self.session.toggle_pause,
                "step": self.session.step_once,
                "faster": self.session.faster,
                "slower": self.session.slower,
                "epsilon": self.session.cycle_epsilon,
                "saliency": self.session.toggle_saliency,
            }

    def frame_url(self) -> str | None:
        from viewer.heatmap import blend_heat_map

        session = self.session
        frame = session.frame
        if session.saliency_on and session.saliency is not None:
            frame = blend_heat_map(frame, session.saliency)
        return png_data_url(np.ascontiguousarray(frame))

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.curves is not None:
            state.update(self.curves.refresh())
        if self.session is not None:
            state.update(session_state(self.session, self.frame_url))
        return state

    def run(self, stop: Callable[[], bool]) -> None:
        from playground.display import parent_gone
        from viewer.session import UNCAPPED

        session = self.session
        self.server.start()
        print(f"watch at {self.server.url}", flush=True)
        next_publish = 0.0
        try:
            while not stop() and not parent_gone():
                started = time.perf_counter()
                while not self.server.commands.empty():
                    self.actions.get(self.server.commands.get_nowait(), lambda: None)()
                if not self.server.watchers and (session is None or session.follow):
                    # Beside a training run with no page open: play, reload and read nothing,
                    # so the run keeps its cores (a page that opens gets the newest weights).
                    time.sleep(IDLE_POLL_SECONDS)
                    continue
                if session is not None:
                    if session.finished:
                        break
                    if session.should_step():
                        session.step()
                    if session.follow:
                        session.reload_if_changed()
                elif self.curves is not None:
                    self.curves.refresh()
                # Encoded only while someone watches, at most 60 times a second.
                if self.server.watchers and started >= next_publish:
                    self.server.publish(self.state())
                    next_publish = started + 1 / 60
                speed = session.speed if session is not None and not session.paused else 30
                period = 1 / 60 if speed == UNCAPPED else 1 / speed
                time.sleep(max(0.0, period - (time.perf_counter() - started)))
        finally:
            self.server.stop()
            if session is not None:
                session.close()


def watch_web(cfg: Any) -> None:
    """Serve the viewer page until Ctrl-C or SIGTERM (or --episodes / --max-steps)."""
    import torch

    from playground.lifecycle import StopSignals

    torch.set_num_threads(1)  # one frame at a time; leave the other cores to training
    viewer = WebViewer(cfg)
    with StopSignals() as stop:
        viewer.run(lambda: stop.requested)
    session = viewer.session
    if session is not None and session.scores:
        print(
            f"{session.env_id}: mean score {np.mean(session.scores):.2f} over "
            f"{len(session.scores)} games"
        )
