"""``instyle serve``: the web app. FastAPI is imported lazily so the rest of instyle works without it."""

from __future__ import annotations

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


def serve(host: str = "127.0.0.1", port: int = 8000, models: dict[str, Path] | None = None,
          max_upload_mb: float = 20, device: str = "auto", backend: str = "auto", max_live: int = 4) -> None:
    """Run the app with uvicorn until interrupted; ``max_live``: live-mode viewers at once (0: off)."""
    app = create_app(models=models, max_upload_mb=max_upload_mb, device=device, backend=backend, max_live=max_live)
    try:
        import uvicorn
    except ImportError:
        raise InstyleError("the web app needs uvicorn: pip install 'instyle[serve]'") from None
    print(f"instyle web app on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
