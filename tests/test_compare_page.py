"""src.compare's page in a real browser: headless Chromium renders the side-by-side table with marked words.

Marked `browser` (deselected by default): `make test-browser` installs Debian's chromium when it is missing and
runs these; .ci/run does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from src.compare import main as compare_main
from tests.helpers.runs import A_PRED, B_PRED, REFS, SOURCES, write_run

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# no sandbox as root; no background connections on a machine whose network is closed
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MARK = (0xFF, 0xE0, 0x8A)  # compare.html's <mark> background


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make test-browser installs it)")
    user_dir = tmp_path / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={user_dir}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def page(tmp_path) -> Path:
    a = write_run(tmp_path / "a", A_PRED, REFS, SOURCES)
    b = write_run(tmp_path / "b", B_PRED, REFS, SOURCES)
    assert compare_main([str(a), str(b), "--out", str(tmp_path / "cmp"), "--wandb", "disabled"]) == 0
    return tmp_path / "cmp" / "compare.html"


def test_chromium_reads_the_side_by_side_table_from_the_dom(page, tmp_path):
    proc = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    body = dom[dom.index('<table id="examples">') :]
    assert body.count('<tr class="') == 6  # every example, side by side
    assert '<td class="text pred-a">fruit then <mark>animal</mark></td>' in body
    assert '<td class="text pred-b">fruit then <mark>fruit</mark></td>' in body


def test_chromium_screenshot_shows_the_marked_words(page, tmp_path):
    shot = tmp_path / "compare.png"
    proc = chromium(tmp_path, "--window-size=1200,800", f"--screenshot={shot}", page.as_uri())
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 800)
    colours = image.getcolors(maxcolors=1 << 20)
    marked = sum(n for n, rgb in colours if all(abs(c - m) <= 6 for c, m in zip(rgb, MARK, strict=True)))
    assert marked > 500, "no highlighted words rendered"
    assert len(colours) > 50  # text, borders and highlights, not a blank page
