"""Where the CLI finds its server and token: flags, then environment, then the config file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vize.client.errors import VizeError

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path(override: str | None = None) -> Path:
    """``--config``, else ``$VIZE_CONFIG``, else ``$XDG_CONFIG_HOME/vize/config.json``."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("VIZE_CONFIG"):
        return Path(os.environ["VIZE_CONFIG"]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "vize" / "config.json"


def load(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise VizeError(f"Cannot read the config file {path}: {exc}") from exc
    return (
        {k: str(v) for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}
    )


def save(path: Path, url: str, token: str) -> None:
    """Write the file readable by its owner only: it holds an API token."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {**load(path), "url": url, "token": token}
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to a pre-existing temp file
    os.replace(tmp, path)


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str


def resolve(url: str | None, token: str | None, path: Path) -> Credentials:
    """Flags win over ``VIZE_URL``/``VIZE_TOKEN``, which win over the config file."""
    stored = load(path)
    final_url = url or os.environ.get("VIZE_URL") or stored.get("url") or DEFAULT_URL
    final_token = token or os.environ.get("VIZE_TOKEN") or stored.get("token")
    if not final_token:
        raise VizeError(
            f"No API token: run `vize login`, set VIZE_TOKEN or pass --token (config file: {path})."
        )
    return Credentials(final_url, final_token)
