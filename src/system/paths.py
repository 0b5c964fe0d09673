"""Where the project's own files are: the repository root and its Hydra config directory."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "conf"
