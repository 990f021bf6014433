"""The diagnosis pages of the demo exporter, as a real process, in headless Chromium:
every section renders, the status strip shows each verdict in its colour, the landing page
is grouped by section, and there is no "run now" without on-demand runs."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from exporter.diagnose import SECTION_IDS
from exporter.diagnose.pages import COLOURS
from tests.core.test_process import CHROMIUM_FLAGS

ROOT = Path(__file__).resolve().parents[2]


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _two_free_ports() -> int:
    """A port whose next one is free too (the demo's TLS listener uses web port + 1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port < 65535 and _free(port + 1):
            return port
    raise RuntimeError("no two adjacent free ports")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Demo:
    def __init__(self, tmp: Path) -> None:
        self.port = _two_free_ports()
        self.url = f"http://127.0.0.1:{self.port}"
        kubeconfig = tmp / "kubeconfig.yaml"
        kubeconfig.write_text((ROOT / "exporter/demo-kubeconfig.yaml").read_text()
                              .replace("127.0.0.1:9816", f"127.0.0.1:{self.port}"))
        text = (ROOT / "exporter/demo.yaml").read_text()
        text = text.replace("127.0.0.1:9817", f"127.0.0.1:{self.port + 1}")
        text = text.replace("127.0.0.1:9816", f"127.0.0.1:{self.port}")
        text = text.replace("exporter/demo-kubeconfig.yaml", str(kubeconfig))
        config = tmp / "demo.yaml"
        config.write_text(text)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "exporter.cli", "run", f"--config.file={config}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"exporter exited: {self.proc.communicate()[1][-2000:]}")
            try:
                if self.get("/-/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the demo exporter never became ready")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    exporter = Demo(tmp_path_factory.mktemp("demo"))
    try:
        exporter.wait_ready()
        yield exporter
    finally:
        err = exporter.stop()
        assert "Traceback" not in err, err[-3000:]


def _verdicts(html: str) -> dict[str, str]:
    """Section -> verdict, read from the status strip's cells, in page order."""
    cells = re.findall(r'<a class="cell v-(\w+)" href="/diagnose/([\w-]+)"', html)
    return {sid: verdict for verdict, sid in cells}


def test_demo_diagnosis_shows_every_section_side_by_side(demo: Demo) -> None:
    page = demo.get("/diagnose")
    assert page.status_code == 200
    verdicts = _verdicts(page.text)
    assert list(verdicts) == list(SECTION_IDS)
    # what the demo serves itself
    assert verdicts["api-down"] == "failing"  # a 503 and a timeout, a crash-looping pod
    assert verdicts["payment-failures"] == "degraded"  # Stripe: emails degraded
    assert verdicts["resource-exhaustion"] == "degraded"  # the HPA at its maximum
    assert verdicts["ssl-certificate-renewal"] == "degraded"  # expires in five days
    assert "crash-looping since the rollout 14 min ago, revision 42" in page.text
    assert "kubectl rollout undo deployment/festivals-api -n festivals" in page.text
    assert "certificate expires in 5 days" in page.text
    # local servers: green when they run, red with refused when not
    queue = "healthy" if _listening(6379) else "failing"
    assert verdicts["queue-backlog"] == queue
    if queue == "failing":
        assert "Redis does not answer (refused)" in page.text
    assert "<script" not in page.text and "http://" not in page.text.replace(
        "http://127.0.0.1", "").replace("http://festivals-exporter", "")
    for sid in SECTION_IDS:
        one = demo.get(f"/diagnose/{sid}")
        assert one.status_code == 200
        assert f'id="{sid}"' in one.text and one.text.count('<section class="diag"') == 1
    assert demo.get("/diagnose/no-such-section").status_code == 404
    # on-demand runs are not enabled: no button, and the POST is refused
    assert "Run now" not in page.text
    assert httpx.post(demo.url + "/diagnose/api-down/run").status_code == 403


def test_history_sparklines_after_a_few_runs(demo: Demo) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        page = demo.get("/diagnose/high-latency").text
        if '<svg class="spark"' in page:
            assert "<polyline" in page and 'stroke-dasharray' in page  # value and threshold
            return
        time.sleep(0.5)
    raise AssertionError("no sparkline after 40 s of runs")


def test_landing_page_grouped_by_section(demo: Demo) -> None:
    page = demo.get("/").text
    head = page[: page.index("<h2>Probes</h2>")]
    verdicts = _verdicts(head)
    assert list(verdicts) == list(SECTION_IDS)
    assert head.index("API Down") < head.index("festivals-k8s")
    assert '<a href="/probes/stripe-status"' in head


def test_pages_in_headless_chromium_show_each_verdict_colour(demo: Demo) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is installed by `make test`"
    verdicts = _verdicts(demo.get("/diagnose").text)
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "diagnose.png"
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
             "--window-size=1400,900", demo.url + "/diagnose"],
            capture_output=True, text=True, timeout=90)
        assert shot.exists()
        with Image.open(shot) as img:
            colours = img.convert("RGB").getcolors(1 << 24) or []
    counts: dict[tuple[int, ...], int] = {
        rgb: n for n, rgb in colours if isinstance(rgb, tuple)}
    for verdict in set(verdicts.values()):
        rgb = tuple(int(COLOURS[verdict][i:i + 2], 16) for i in (1, 3, 5))
        # a strip cell is at least 100 x 40 px of its verdict's colour
        assert counts.get(rgb, 0) > 4000, (verdict, counts.get(rgb, 0))
    for verdict in {"healthy", "degraded", "failing"} - set(verdicts.values()):
        rgb = tuple(int(COLOURS[verdict][i:i + 2], 16) for i in (1, 3, 5))
        assert counts.get(rgb, 0) < 4000, verdict
