"""``instyle serve``: the web app. FastAPI is imported lazily so the rest of instyle works without it."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from instyle.core.errors import InstyleError

__all__ = ["create_app", "serve"]

def create_app(*args: Any, **kwargs: Any) -> Any:
    """See ``instyle.apps.serve.app.create_app``."""
    try:
        from instyle.apps.serve.app import create_app as _create
    except ImportError as exc:
        raise InstyleError(f"the web app needs FastAPI ({exc.name}): pip install 'instyle[serve]'") from None
    return _create(*args, **kwargs)


def check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InstyleError(f"--port must be a whole number from 1 to 65535, got {port}")
    return port


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a busy port or an unknown host is one clear line
    before start-up (uvicorn would log its own error and exit), and there is no race with uvicorn."""
    check_port(port)
    # The family rule is uvicorn's own, so "localhost" means 127.0.0.1 here as it does there.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, UnicodeError) as exc:  # busy port, not this machine's address, unknown host name
        sock.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InstyleError(f"cannot listen on {host}:{port} ({reason.lower()})") from None
    sock.set_inheritable(True)
    return sock


def serve(host: str = "127.0.0.1", port: int = 8000, models: dict[str, Path] | None = None,
          max_upload_mb: float = 20, device: str = "auto", backend: str = "auto",
          max_pixels: int | None = None, body_timeout_s: float | None = 120.0,
          max_live: int = 4, textures: dict[str, Path] | None = None) -> None:
    """Run the app with uvicorn until interrupted. Every argument and model is checked first, so a
    bad one is one line before anything listens. ``max_pixels``: ``None`` keeps the app's default;
    ``max_live``: live-mode viewers at once (0: off); ``textures``: texture networks for the Texture tab."""
    check_port(port)
    try:
        import uvicorn
    except ImportError:
        raise InstyleError("the web app needs uvicorn: pip install 'instyle[serve]'") from None
    limits: dict[str, Any] = {} if max_pixels is None else {"max_pixels": max_pixels}
    app = create_app(models=models, max_upload_mb=max_upload_mb, device=device, backend=backend,
                     body_timeout_s=body_timeout_s, max_live=max_live, textures=textures, **limits)
    sock = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"instyle web app on http://{shown}:{port}/  (API docs: http://{shown}:{port}/docs)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
