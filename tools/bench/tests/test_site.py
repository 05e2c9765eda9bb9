"""The offline asv site, end to end: real asv results -> publish -> vendor -> serve -> Chromium.

Everything is built in a temp dir: a 4-commit git repo, a two-benchmark suite whose values step up
5x at the third commit (so asv detects a regression), ``asv run --python=same --set-commit-hash``
once per commit with ``HOME`` pointed at the temp dir (``asv machine`` writes ~/.asv-machine.json),
then :func:`tristore_bench.site.build_site` with the repository's own package.json/node_modules.

Chromium runs headless with every host name except 127.0.0.1 unresolvable, so a page that still
needed a CDN would fail here exactly as it does offline. It is driven over the DevTools protocol
(a minimal stdlib WebSocket client below, to avoid a dependency), which reports uncaught
exceptions, console errors, failed loads and every request the page makes.
"""

from __future__ import annotations

import base64
import concurrent.futures
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tristore_bench import fingerprint, site, site_attribution, site_trust, thresholds
from tristore_bench import regressions as regressions_mod
from tristore_bench.asv import HarnessError, asv_command

REPO = Path(__file__).resolve().parents[3]
NPM_ROOT = site.NPM_ROOT  # tools/bench: package.json, package-lock.json, node_modules
MACHINE = "site-test"

pytestmark = [pytest.mark.xdist_group("asv-site"), pytest.mark.timeout(240)]

BENCH_MODULE = """
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _level():
    with open(os.path.join(HERE, "level.txt")) as f:
        return float(f.read())


class Toy:
    repeat = (2, 4, 0.2)
    number = 1
    warmup_time = 0.0
    params = [[1, 2]]
    param_names = ["n"]

    def time_sleep(self, n):
        # 10 ms steps: scheduler jitter on a loaded 2-core machine is far below a 5x step.
        time.sleep(0.01 * n * _level())


def track_level():
    return _level()


track_level.unit = "widgets"


def track_overhead_ratio():
    # An in-process ratio by its name (thresholds.kind): gated, and flat, so never flagged.
    return 1.5


track_overhead_ratio.unit = "ratio"
"""
RATIO = "bench_toy.track_overhead_ratio"
SLEEPS = ("bench_toy.Toy.time_sleep(1)", "bench_toy.Toy.time_sleep(2)")

# An instruction count as the site sees one (an ``instructions.`` entry): segmented by its repeat
# noise, so its step is flagged at the commit that measured it, where track_level, a measured
# series, needs MIN_SEGMENT commits after its step.
COUNT_MODULE = """
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def track_instructions():
    with open(os.path.join(HERE, "level.txt")) as f:
        return 1000.0 * float(f.read())


track_instructions.unit = "instructions"
"""
COUNT = "instructions.track_instructions"

# The level each commit's run sees: a 5x step at the third commit, held for two commits (asv only
# reports a regression that lasts at least two commits).
LEVELS = (1, 1, 5, 5)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Published:
    root: Path
    config: Path
    repo: Path
    html: Path
    results: Path
    commits: list[str]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """Built once per test run, even when xdist spreads this module over several workers.

    (``--dist loadgroup`` would keep the module on one worker, but pytest-xdist 3.8 no longer
    groups under pytest 9.2: pytest-dev/pytest-xdist#1386.) Workers share the run's base temp
    dir; the first to take the lock builds, the others wait and reuse its result.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "asv-site"
    with (shared / "asv-site.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / "published.json"
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            built = _build(root)
            done.write_text(json.dumps({"commits": built.commits}))
        commits = json.loads(done.read_text())["commits"]
    return Published(
        root, root / "asv.conf.json", root / "repo", root / "html", root / "results", commits
    )


def _build(root: Path) -> Published:
    repo, bench, home = root / "repo", root / "bench", root / "home"
    for d in (repo, bench, home):
        d.mkdir()

    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    _run(["git", "init", "-q", "-b", "main"], repo, git_env)
    for day in range(1, len(LEVELS) + 1):
        stamp = f"2026-01-0{day}T12:00:00+00:00"
        env = {**git_env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        _run(["git", "commit", "-q", "--allow-empty", "-m", f"commit {day}"], repo, env)
    commits = _run(["git", "rev-list", "--reverse", "main"], repo).split()

    (bench / "__init__.py").write_text("")
    (bench / "bench_toy.py").write_text(BENCH_MODULE)
    (bench / "instructions.py").write_text(COUNT_MODULE)

    # The project's real config with every path moved into the temp dir: the repo's results/
    # and html are never touched.
    conf = json.loads((REPO / "asv.conf.json").read_text())
    conf.update(
        repo=str(repo),
        branches=["main"],
        benchmark_dir=str(bench),
        results_dir=str(root / "results"),
        html_dir=str(root / "html"),
        env_dir=str(root / "env"),
    )
    config = root / "asv.conf.json"
    config.write_text(json.dumps(conf, indent=2))

    asv_env = {**os.environ, "HOME": str(home)}
    asv = asv_command()
    # As `make machine` does: asv's defaults plus the environment fingerprint.
    _run(
        [sys.executable, "-m", "tristore_bench.cli", "machine", "--name", MACHINE],
        root,
        asv_env,
    )
    for commit, level in zip(commits, LEVELS, strict=True):
        (bench / "level.txt").write_text(str(level))
        _run(
            [
                *asv,
                "run",
                "--config",
                str(config),
                "--python=same",
                "--machine",
                MACHINE,
                "--set-commit-hash",
                commit,
                "--show-stderr",
            ],
            root,
            asv_env,
        )

    report = site.build_site(config)
    assert report.html_dir == root / "html"
    return Published(root, config, repo, report.html_dir, root / "results", commits)


# --------------------------------------------------------------------------------------------
# A minimal DevTools-protocol client over a stdlib WebSocket (RFC 6455, client side).


class _WebSocket:
    def __init__(self, url: str, timeout: float) -> None:
        assert url.startswith("ws://")
        hostport, _, path = url[len("ws://") :].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "DevTools closed the connection during the handshake"
            head += chunk
        status, _, self._buffer = head.partition(b"\r\n\r\n")
        assert status.split(b"\r\n", 1)[0].split()[1] == b"101", status

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            mask = self._read(4) if b1 & 0x80 else b""
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools sent close")
            if opcode in (0x9, 0xA):  # ping/pong: Chromium does not send them; ignore
                continue
            message += data
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


@dataclass
class PageLog:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class DevTools:
    def __init__(self, ws_url: str) -> None:
        self.ws = _WebSocket(ws_url, timeout=30)
        self.next_id = 0
        self.log = PageLog()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def _event(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.log.errors.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            self.log.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.log.errors.append(f"log: {entry['text']} {entry.get('url', '')}")
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params["request"]["url"])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            return None
        return result["result"].get("value")

    def open(self, url: str) -> PageLog:
        """Load ``url`` fresh (via about:blank, so a hash change is a real load)."""
        self.call("Page.navigate", url="about:blank")
        self.log = PageLog()
        self.call("Page.navigate", url=url)
        return self.log

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        return value

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    argv = [
        exe,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--no-default-browser-check",
        # Offline, as far as the page can tell: no name but the loopback resolves.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--window-size=1280,900",
        "about:blank",
    ]
    stderr = (profile / "chromium.log").open("wb")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        # Chromium writes the port it picked to DevToolsActivePort once it listens.
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert proc.poll() is None, (profile / "chromium.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        yield tools
        tools.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr.close()


@pytest.fixture(scope="module")
def server(published: Published) -> Iterator[str]:
    httpd = site.serve(published.html, port=0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield site.url_of(httpd)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def _assert_clean(browser: DevTools, url: str, base: str, shot: Path) -> None:
    """No script error, console error, failed load or off-site request while ``url`` rendered."""
    time.sleep(0.5)
    browser.evaluate("1")  # drain events that arrived after the last check
    log = browser.log
    foreign = [u for u in log.requests if not u.startswith((base, "data:", "blob:", "about:"))]
    problems = [*log.errors, *(f"request left the site: {u}" for u in foreign)]
    if problems:
        browser.screenshot(shot)
    assert not problems, f"{url}: {problems} (screenshot: {shot})"


# --------------------------------------------------------------------------------------------
# tests


def test_published_pages_reference_no_network(published: Published) -> None:
    index = (published.html / "index.html").read_text()
    assert "https://" not in index.split("<body", 1)[0]  # every head reference is local
    assert "integrity=" not in index
    for asset in site.ASSETS:
        local = f"vendor/{asset.package}/{asset.path}"
        assert (published.html / local).is_file(), asset.url
        assert f'"{local}"' in index, asset.url
    fonts = published.html / "vendor/bootstrap/dist/fonts/glyphicons-halflings-regular.woff"
    assert fonts.is_file()
    manifest = json.loads((published.html / "vendor/manifest.json").read_text())
    assert manifest[site.ASSETS[0].url]["package"] == "jquery@3.3.1"
    # Re-running the rewrite is a no-op.
    assert site.rewrite_pages(published.html) == []


def test_unvendored_site_fails_offline(
    published: Published, browser: DevTools, tmp_path: Path
) -> None:
    """Control: asv's own pages, in this browser, do land on error.html (so the checks bite)."""
    raw = site.publish(published.config, tmp_path / "raw")
    httpd = site.serve(raw)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        browser.open(site.url_of(httpd) + "index.html")
        landed = browser.wait_for("location.pathname.endsWith('error.html') && location.href")
        assert landed, "asv's CDN-loading pages rendered with no network: the control is broken"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_grid_renders(server: str, browser: DevTools, tmp_path: Path) -> None:
    url = server + "index.html"
    browser.open(url)
    count = browser.wait_for(
        "document.querySelectorAll('#summarygrid-display .benchmark-plot canvas.flot-base')"
        ".length >= 3 && document.querySelectorAll('#summarygrid-display .benchmark-container')"
        ".length"
    )
    # bench_toy's sleep, level and ratio, and the count.
    assert count == 4, f"grid shows {count} benchmarks, want 4"
    assert browser.evaluate("location.pathname").endswith("index.html")
    _assert_clean(browser, url, server, tmp_path / "grid.png")


def test_benchmark_graph_renders(server: str, browser: DevTools, tmp_path: Path) -> None:
    url = server + "index.html#bench_toy.track_level"
    browser.open(url)
    points = browser.wait_for(
        "(function(){var p=$('#main-graph').data('plot'); if(!p) return 0;"
        " return p.getData().reduce(function(n,s){return n+s.data.filter("
        "function(d){return d[1]!==null;}).length;},0);})()"
    )
    assert points == len(LEVELS), f"graph has {points} points, want {len(LEVELS)}"
    assert browser.evaluate("$('#main-graph canvas.flot-base').length") == 1
    _assert_clean(browser, url, server, tmp_path / "graph.png")


def test_regressions_page_renders(server: str, browser: DevTools, tmp_path: Path) -> None:
    url = server + "index.html#/regressions"
    browser.open(url)
    rows = browser.wait_for(
        "$('#regressions-body table:not(.ignored) tbody tr').map(function(){"
        "return $(this).find('td').first().text();}).get().join('\\n')"
    )
    names = set(str(rows or "").splitlines())
    # The count's step is flagged at its commit. The sleeps' 5x steps and track_level's are wall
    # time: context, shown on their graphs and never flagged.
    assert names == {COUNT}, f"regressions table lists {names}"
    factor = browser.evaluate(
        "$('#regressions-body table:not(.ignored) tbody tr').filter(function(){"
        "return $(this).text().indexOf('track_instructions')>=0;}).find('td').eq(3).text()"
    )
    assert factor == "5.00x", factor
    _assert_clean(browser, url, server, tmp_path / "regressions.png")


def test_a_flagged_count_row_links_to_its_attribution_page(
    published: Published, server: str, browser: DevTools, tmp_path: Path
) -> None:
    """links.js on the real Regressions page: the count's row gets the link its index names.

    The toy count is no tristore workload, so the site wrote no page for it; an index entry and
    a page in the shape site_attribution writes stand in for one.
    """
    pages = published.html / site_attribution.PAGES_DIR
    index = json.loads((pages / "index.json").read_text())
    assert index == {}  # built by the site step, with the links script
    assert (pages / site_attribution.LINKS_SCRIPT).is_file()
    page = f"{site_attribution.PAGES_DIR}/toy.html"
    (published.html / page).write_text("<html><body><table id='attribution'></table></body></html>")
    (pages / "index.json").write_text(json.dumps({f"{COUNT}|{published.commits[2]}": page}))
    try:
        url = server + "index.html#/regressions"
        browser.open(url)
        href = browser.wait_for(
            "$('#regressions-body a.tristore-attribution').filter(function(){"
            "return $(this).closest('tr').text().indexOf('track_instructions')>=0;})"
            ".attr('href') || ''"
        )
        assert href == page
        others = browser.evaluate("$('#regressions-body a.tristore-attribution').length")
        assert others == 1  # no other row has a page
        _assert_clean(browser, url, server, tmp_path / "attribution-link.png")
    finally:
        (pages / "index.json").write_text(json.dumps(index))
        (published.html / page).unlink()


def _pct(x: float) -> str:
    """trust.js's figure for a relative quantity."""
    return f"{100 * x:.1f}%" if 100 * x < 10 else f"{100 * x:.0f}%"


def _trust(published: Published) -> dict[str, Any]:
    return json.loads((published.html / site_trust.DATA_FILE).read_text())


@pytest.mark.parametrize(
    ("graph", "entries"), [("bench_toy.Toy.time_sleep", SLEEPS), (COUNT, (COUNT,))]
)
def test_a_graph_shows_each_entrys_noise_band_and_threshold(
    published: Published,
    server: str,
    browser: DevTools,
    tmp_path: Path,
    graph: str,
    entries: tuple[str, ...],
) -> None:
    trust = _trust(published)["entries"]
    url = server + "index.html#" + graph
    browser.open(url)
    drawn = browser.wait_for(
        f"($('#main-graph').data('tristore-trust') || []).length === {len(entries)} && "
        "$('#main-graph').data('tristore-trust')"
    )
    assert drawn, f"{graph}: no band drawn"
    assert sorted(d["entry"] for d in drawn) == sorted(entries)
    for d in drawn:
        info = trust[d["entry"]]
        latest = d["latest"]
        assert d["gated"] is info["gated"] is (graph == COUNT)
        low, high = d["band"]
        assert low == pytest.approx(latest * max(0.0, 1 - info["noise"]))
        assert high == pytest.approx(latest * (1 + info["noise"]))
        assert d["threshold"] == pytest.approx(latest * (1 + info["threshold"]))
        # The band is on the canvas: its middle, at the plot's left edge, is tinted.
        pixel = browser.evaluate(
            "(function(){var p=$('#main-graph').data('plot'), o=p.getPlotOffset();"
            "var c=$('#main-graph canvas.flot-base')[0], r=c.width/c.clientWidth;"
            f"var y=o.top+p.getAxes().yaxis.p2c({(low + high) / 2});"
            "return Array.from(c.getContext('2d').getImageData("
            "Math.round((o.left+3)*r), Math.round(y*r), 1, 1).data);})()"
        )
        assert pixel and min(pixel[:3]) < 250, f"{d['entry']}: band pixel {pixel}"
    legend = browser.evaluate("$('#tristore-trust').text()")
    for entry in entries:
        info = trust[entry]
        kind = thresholds.Kind(info["kind"])
        if "(" in entry:
            assert entry[entry.index("(") :] in legend
        assert kind.label in legend
        assert f"noise \u00b1{_pct(info['noise'])}" in legend, legend
        applied = "" if info["gated"] else " (not applied)"
        assert f"threshold {_pct(info['threshold'])}{applied}" in legend, legend
        assert f"from {info['commits']} commits" in legend
    assert ("context, not gated" in legend) is (graph != COUNT)
    _assert_clean(browser, url, server, tmp_path / "trust-graph.png")


def test_the_grid_groups_the_series_by_kind(server: str, browser: DevTools, tmp_path: Path) -> None:
    url = server + "index.html"
    browser.open(url)
    groups = browser.wait_for(
        "$('#summarygrid-display .tristore-kind').length && "
        "JSON.stringify($('#summarygrid-display .tristore-kind').map(function(){"
        "return [[$(this).children('h1').text(), $(this).find('a.benchmark-container')"
        ".map(function(){return $(this).attr('href').slice(1);}).get().sort()]];}).get())"
    )
    assert groups, "the grid was not grouped"
    assert json.loads(groups) == [
        ["Exact counts (gated)", [COUNT]],
        ["In-process ratios (gated where their noise allows)", [RATIO]],
        # No size in the toy suite: its section is left out.
        ["Wall time (context, not gated)", ["bench_toy.Toy.time_sleep", "bench_toy.track_level"]],
    ]
    # Nothing left in asv's module groups; the module headings are kept inside each kind.
    assert browser.evaluate("$('#summarygrid-display > .benchmark-group').length") == 0
    modules = browser.evaluate(
        "$('#kind-wall .tristore-module > h3').map(function(){return $(this).text();}).get()"
    )
    assert modules == ["bench_toy"]
    _assert_clean(browser, url, server, tmp_path / "trust-grid.png")


def test_trust_json_agrees_with_the_thresholds_command(published: Published) -> None:
    """The figures the site draws are those the command prints, for every entry."""
    done = CliRunner().invoke(thresholds.command, ["--asv-config", str(published.config)])
    assert done.exit_code == 0, done.output
    block = json.loads(done.stdout)
    *rows, summary = done.stderr.splitlines()[1:]
    trust = _trust(published)
    assert set(trust["entries"]) == {row.split()[0] for row in rows}
    noise = {n.name: n for n in thresholds.measure_noise(published.results)}
    for row in rows:
        entry, kind, gated, commits, *_ = row.split()
        info = trust["entries"][entry]
        assert info["kind"] == kind == thresholds.kind(entry)
        assert info["gated"] is (gated == "gated")
        assert info["commits"] == int(commits) == noise[entry].commits
        assert info["threshold"] == thresholds.effective_threshold(block, entry)
        assert info["noise"] == pytest.approx(noise[entry].band)
    index = json.loads((published.html / "index.json").read_text())
    assert set(trust["benchmarks"]) == set(index["benchmarks"])
    assert [k["heading"] for k in trust["kinds"]] == [k.heading for k in thresholds.Kind]
    # The goal's line: the ratio, held to the 5% floor, is the one gated entry that is no count.
    assert summary.startswith("gated non-count entries: 1; at <= 10%: 1 (100%"), summary


def test_regressions_command_reads_the_published_site(published: Published) -> None:
    runner = CliRunner()
    args = ["--asv-config", str(published.config)]
    done = runner.invoke(regressions_mod.command, args)
    assert done.exit_code == 1, done.output
    assert COUNT in done.output and "bench_toy.track_level" not in done.output
    assert published.commits[2][:8] in done.output
    # The step is at commit 3: newer than commit 2, not newer than commit 3.
    done = runner.invoke(regressions_mod.command, [*args, "--since", published.commits[1]])
    assert done.exit_code == 1, done.output
    done = runner.invoke(regressions_mod.command, [*args, "--since", published.commits[2]])
    assert done.exit_code == 0, done.output


def test_every_result_carries_the_environment_fingerprint(published: Published) -> None:
    expected = fingerprint.collect()
    files = sorted((published.results / MACHINE).glob("*-*.json"))
    assert len(files) == len(published.commits)
    for path in files:
        params = json.loads(path.read_text())["params"]
        assert {k: params.get(k) for k in fingerprint.FINGERPRINT_KEYS} == expected, path
        assert params["machine"] == MACHINE and params["num_cpu"], path
    # Published too: the site's sidebar offers each key with the value measured under it.
    index = json.loads((published.html / "index.json").read_text())
    for key, value in expected.items():
        assert index["params"][key] == [value], key


def test_thresholds_from_real_results(published: Published) -> None:
    noise = thresholds.measure_noise(published.results)
    # One entry per parameter combination, named as asv's regressions page names them.
    sleeps = set(SLEEPS)
    assert {n.name for n in noise} == {*sleeps, "bench_toy.track_level", RATIO, COUNT}
    for sleep in (n for n in noise if n.name in sleeps):
        assert sleep.commits == len(LEVELS)
        assert sleep.ci is not None and sleep.iqr is not None
    block = thresholds.thresholds_block(noise)
    defaults = thresholds.default_keys()
    assert list(block.items())[: len(defaults)] == list(defaults.items())
    for n in noise:
        value = thresholds.effective_threshold(block, n.name)
        floor = thresholds.COUNT_FLOOR if n.is_count else thresholds.FLOOR
        assert floor <= value <= thresholds.CAP, (n.name, value)


def test_publish_derives_the_thresholds_the_command_prints(published: Published) -> None:
    # The project's config holds the policy; what asv is given is derived from it and the
    # results, exactly what `tristore-bench thresholds` prints for the same config.
    policy = json.loads(published.config.read_text())["regressions_thresholds"]
    done = CliRunner().invoke(thresholds.command, ["--asv-config", str(published.config)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == thresholds.derive(policy, published.results)


def test_an_override_reaches_the_page_and_both_commands(
    published: Published, tmp_path: Path
) -> None:
    """A policy override in the config, published again: the Regressions page's file,
    ``tristore-bench regressions`` and ``tristore-bench thresholds`` all hold the count to it."""
    conf = json.loads(published.config.read_text())
    # The count rises 5x (by 400%): held to 500%, it is no regression.
    override = {thresholds.name_regex(COUNT): 5.0}
    conf.update(
        html_dir=str(tmp_path / "html"),
        regressions_thresholds={**conf["regressions_thresholds"], **override},
    )
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps(conf))
    html = site.publish(config)
    page = json.loads((html / "regressions.json").read_text())["regressions"]
    assert COUNT not in {row[0] for row in page}
    assert COUNT not in {r.benchmark for r in regressions_mod.load_regressions(html)}
    done = CliRunner().invoke(regressions_mod.command, ["--asv-config", str(config)])
    assert COUNT not in done.output
    done = CliRunner().invoke(thresholds.command, ["--asv-config", str(config)])
    assert done.exit_code == 0, done.output
    assert thresholds.effective_threshold(json.loads(done.stdout), COUNT) == 5.0
    # Without the override the same results flag it (the site the fixture published).
    assert COUNT in {r.benchmark for r in regressions_mod.load_regressions(published.html)}


def test_missing_npm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NPM_ROOT / name, tmp_path / name)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(HarnessError, match="npm not found on PATH"):
        site.ensure_node_modules(tmp_path)


def test_concurrent_installs_run_npm_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # npm ci deletes node_modules first: two at once (two test workers publishing a site) failed
    # with ENOTEMPTY. A stand-in npm installs the locked versions slowly and logs each run.
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NPM_ROOT / name, tmp_path / name)
    locked = site._locked_versions(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, time\n"
        "root = pathlib.Path.cwd()\n"
        "(root / 'runs.log').open('a').write('ci\\n')\n"
        "time.sleep(0.5)\n"
        f"for pkg, ver in {locked!r}.items():\n"
        "    d = root / 'node_modules' / pkg\n"
        "    d.mkdir(parents=True, exist_ok=True)\n"
        "    (d / 'package.json').write_text(json.dumps({'version': ver}))\n"
    )
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ran = sorted(pool.map(lambda _: site.ensure_node_modules(tmp_path), range(2)))
    assert ran == [False, True]
    assert (tmp_path / "runs.log").read_text() == "ci\n"


def test_unknown_cdn_reference_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text(
        '<head><script src="https://cdn.example.invalid/new-lib.js"></script></head>'
    )
    with pytest.raises(HarnessError, match="new-lib.js"):
        site.rewrite_pages(tmp_path)


def test_tampered_vendor_file_fails_the_integrity_check(tmp_path: Path) -> None:
    # The files npm serves byte-identical to the CDN are held to the page's SRI hashes: a lockfile
    # pinned to another version (or a corrupted node_modules) cannot slip through.
    asv = pytest.importorskip("asv")
    www = Path(asv.__file__).parent / "www"
    shutil.copy(www / "index.html", tmp_path / "index.html")
    site.ensure_node_modules(NPM_ROOT)
    site.vendor(tmp_path, NPM_ROOT / "node_modules")
    (tmp_path / "vendor/jquery/dist/jquery.min.js").write_text("/* not jQuery 3.3.1 */")
    with pytest.raises(HarnessError, match=r"jquery\.min\.js .*differs from"):
        site.rewrite_pages(tmp_path)


def test_site_command_help_lists_its_options() -> None:
    done = CliRunner().invoke(site.command, ["--help"])
    assert done.exit_code == 0
    for option in ("--serve / --no-serve", "--port", "--html-dir", "--asv-config"):
        assert option in done.output


def test_package_lock_pins_what_assets_need() -> None:
    lock = json.loads((NPM_ROOT / "package-lock.json").read_text())["packages"]
    declared = json.loads((NPM_ROOT / "package.json").read_text())["dependencies"]
    for asset in site.ASSETS:
        assert lock[f"node_modules/{asset.package}"]["version"] == declared[asset.package]
