"""`run.py watch`: the window (pygame) or, with --web, the web page."""

from __future__ import annotations

from viewer.config import WatchConfig


def watch(cfg: WatchConfig) -> None:
    """Watch an agent play: in a window, headless to files, or in a browser (--web)."""
    if cfg.web:
        from viewer.web import watch_web

        watch_web(cfg)
        return
    from viewer.window import watch as watch_window

    watch_window(cfg)
