"""``tristore-bench site``: publish the asv results as a site that works with no network.

asv 0.6.6's ``index.html`` loads jQuery, flot (+ plugins), bootstrap, blueimp-md5 and stupidtable
from three CDNs, and redirects to ``error.html`` when one fails: offline the site is unusable. This
module

1. runs ``asv publish`` (the venv's asv, cwd = the config's directory), with the history's
   change-point detection in place of asv's (:mod:`tristore_bench.asv_publish`);
2. installs the same libraries from the npm registry, pinned in ``package.json`` /
   ``package-lock.json`` in ``tools/bench`` (``npm ci``; skipped when ``node_modules`` already
   holds exactly the locked versions, so re-publishing needs neither npm nor a network);
3. copies the files the pages use into ``<html_dir>/vendor/<package>/<path in package>`` (keeping
   the package layout so bootstrap's CSS finds ``../fonts/``) with each package's licence, and
   rewrites every CDN ``<script src>`` / ``<link href>`` in the published pages to those copies;
4. loads ``trust.js`` in ``index.html`` (:mod:`tristore_bench.site_trust`): each graph shades its
   series' measured noise and draws its threshold, with a legend (kind, gated or context, noise,
   threshold, commits), and the grid groups the benchmarks by kind, from the ``trust.json``
   ``asv publish`` wrote with the thresholds it applied;
5. optionally serves ``html_dir`` on 127.0.0.1 (asv's pages fetch JSON with XHR, which browsers
   refuse over ``file://``).

The CDN URLs are matched exactly against :data:`ASSETS`. A page that references any other remote
script or stylesheet (a newer asv) is an error naming the URL, rather than a site that silently
still needs the network. Where the npm file is byte-identical to the CDN file, its hash is checked
against the page's SRI ``integrity`` value at vendoring time; the rewritten tags drop
``integrity``/``crossorigin`` (same-origin files, and ``crossorigin`` breaks ``file://`` loads).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click

from tristore_bench.asv import (
    HarnessError,
    asv_config_option,
    asv_paths,
    html_dir_option,
)

__all__ = [
    "ASSETS",
    "Asset",
    "SiteReport",
    "build_site",
    "command",
    "ensure_node_modules",
    "publish",
    "rewrite_pages",
    "serve",
    "vendor",
]

VENDOR_DIR = "vendor"
#: Where package.json pins the site's JavaScript and ``npm ci`` puts node_modules: this
#: distribution's own folder in the checkout (tristore-bench is repository tooling, installed
#: editable from it by ``make venv``).
NPM_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Asset:
    """One CDN reference in asv's pages and the npm file that replaces it."""

    url: str
    package: str
    path: str
    # True when the npm file is byte-for-byte the CDN file (its SRI hash must then match).
    identical: bool
    # Files the asset itself loads at run time, relative to the package root.
    extra: tuple[str, ...] = ()
    note: str = ""


_FLOT = "https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/"
_FLOT_NOTE = "cdnjs serves its own minified build; npm flot@0.8.3 ships the unminified source"

# Exactly the remote references in asv 0.6.6's www/index.html (error.html has none).
ASSETS: tuple[Asset, ...] = (
    Asset("https://code.jquery.com/jquery-3.3.1.min.js", "jquery", "dist/jquery.min.js", True),
    Asset(_FLOT + "jquery.flot.min.js", "flot", "jquery.flot.js", False, note=_FLOT_NOTE),
    Asset(_FLOT + "jquery.flot.time.min.js", "flot", "jquery.flot.time.js", False, note=_FLOT_NOTE),
    Asset(
        _FLOT + "jquery.flot.selection.min.js",
        "flot",
        "jquery.flot.selection.js",
        False,
        note=_FLOT_NOTE,
    ),
    Asset(
        _FLOT + "jquery.flot.categories.min.js",
        "flot",
        "jquery.flot.categories.js",
        False,
        note=_FLOT_NOTE,
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js",
        "flot-orderbars",
        "js/jquery.flot.orderBars.js",
        True,
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/stupidtable/1.0.1/stupidtable.min.js",
        "stupid-table-plugin",
        "stupidtable.min.js",
        False,
        note="1.0.1 was never published to npm; 1.1.3 (same author, same API) is the only version",
    ),
    Asset(
        "https://cdnjs.cloudflare.com/ajax/libs/blueimp-md5/2.19.0/js/md5.min.js",
        "blueimp-md5",
        "js/md5.min.js",
        True,
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/js/bootstrap.min.js",
        "bootstrap",
        "dist/js/bootstrap.min.js",
        True,
    ),
    Asset(
        "https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css",
        "bootstrap",
        "dist/css/bootstrap.min.css",
        True,
        # bootstrap.min.css refers to ../fonts/glyphicons-halflings-regular.{eot,svg,ttf,woff}.
        extra=tuple(
            f"dist/fonts/glyphicons-halflings-regular.{x}" for x in ("eot", "svg", "ttf", "woff")
        ),
    ),
)

_BY_URL = {asset.url: asset for asset in ASSETS}
_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r"""\b(src|href)(\s*=\s*)(["'])(.*?)\3""", re.IGNORECASE | re.DOTALL)
_INTEGRITY = re.compile(r"""\bintegrity\s*=\s*(["'])(.*?)\1""", re.IGNORECASE | re.DOTALL)
# Attributes that only make sense for a cross-origin fetch.
_CROSS_ORIGIN_ATTRS = re.compile(
    r"""\s+(?:integrity|crossorigin|referrerpolicy)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?""",
    re.IGNORECASE,
)
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


@dataclass
class SiteReport:
    """What :func:`build_site` did, for the CLI to print and tests to assert on."""

    html_dir: Path
    pages: list[Path] = field(default_factory=list)
    vendored: dict[str, Path] = field(default_factory=dict)  # CDN URL -> local file
    npm_ran: bool = False
    attribution: list[Path] = field(default_factory=list)  # one page per flagged count step
    trust: Path | None = None  # trust.json: each entry's kind, noise and threshold


# --------------------------------------------------------------------------------------------
# asv publish


def publish(config: Path | str = "asv.conf.json", html_dir: Path | None = None) -> Path:
    """Run ``asv publish`` for ``config``; return the html directory it wrote."""
    paths = asv_paths(config)
    target = Path(html_dir).resolve() if html_dir is not None else paths.html_dir
    # asv's publish with the history's change-point detection (tristore_bench.changepoints).
    publish_asv = [sys.executable, "-m", "tristore_bench.asv_publish"]
    argv = [*publish_asv, "publish", "--config", str(paths.config), "--html-dir", str(target)]
    try:
        done = subprocess.run(
            argv, cwd=paths.root, capture_output=True, text=True, timeout=600, check=False
        )
    except FileNotFoundError as exc:
        raise HarnessError(f"cannot run asv ({argv[0]}): install the dev extra") from exc
    except subprocess.TimeoutExpired as exc:
        raise HarnessError("asv publish took over 600 s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise HarnessError(f"asv publish failed (exit {done.returncode}):\n{tail}")
    if not (target / "index.html").is_file():
        raise HarnessError(f"asv publish wrote no {target / 'index.html'}")
    return target


# --------------------------------------------------------------------------------------------
# npm


def _locked_versions(npm_root: Path) -> dict[str, str]:
    lock_path = npm_root / "package-lock.json"
    if not lock_path.is_file():
        raise HarnessError(
            f"{lock_path} is missing: the site's JavaScript is pinned there (see package.json)"
        )
    packages = json.loads(lock_path.read_text(encoding="utf-8")).get("packages", {})
    locked = {
        key.removeprefix("node_modules/"): str(meta.get("version", ""))
        for key, meta in packages.items()
        if key.startswith("node_modules/")
    }
    missing = sorted({a.package for a in ASSETS} - set(locked))
    if missing:
        raise HarnessError(f"{lock_path} does not pin {', '.join(missing)} (add to package.json)")
    return locked


NPM_LOCK = ".npm-ci.lock"  # beside node_modules: one npm ci at a time (see ensure_node_modules)


def _installed_version(node_modules: Path, package: str) -> str | None:
    try:
        meta = json.loads((node_modules / package / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(meta.get("version"))


def ensure_node_modules(npm_root: Path) -> bool:
    """Make ``npm_root/node_modules`` hold exactly the locked versions; True if npm had to run.

    When every locked package is already installed at its locked version, npm is not needed (so a
    machine that installed once re-publishes offline). Otherwise ``npm ci`` installs from the
    lockfile, with install scripts disabled: these packages need none, and none should run.

    One process at a time (a lock file beside ``node_modules``): ``npm ci`` first deletes
    ``node_modules``, so two at once (two site builds, two test workers) fail with ENOTEMPTY or
    leave the other reading a half-installed tree. The second one then finds the first's.
    """
    with _npm_lock(npm_root):
        return _ensure_node_modules(npm_root)


@contextlib.contextmanager
def _npm_lock(npm_root: Path) -> Iterator[None]:
    with open(npm_root / NPM_LOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_node_modules(npm_root: Path) -> bool:
    locked = _locked_versions(npm_root)
    node_modules = npm_root / "node_modules"
    if all(_installed_version(node_modules, pkg) == ver for pkg, ver in locked.items()):
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise HarnessError(
            "npm not found on PATH: the site's JavaScript and CSS (jQuery, flot, bootstrap, ...) "
            f"are installed from the npm registry as pinned in {npm_root / 'package-lock.json'}. "
            "Install Node.js with npm (Debian: apt-get install npm) and run again."
        )
    argv = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(
            argv, cwd=npm_root, capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError("npm ci took over 600 s: is the npm registry reachable?") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise HarnessError(f"npm ci failed in {npm_root} (exit {done.returncode}):\n{tail}")
    return True


# --------------------------------------------------------------------------------------------
# vendoring and rewriting


def _sri_matches(data: bytes, integrity: str) -> bool:
    """True if ``data`` matches any of the space-separated ``alg-base64`` hashes (SRI rules)."""
    for token in integrity.split():
        alg, _, expected = token.partition("-")
        if alg.lower() in {"sha256", "sha384", "sha512"}:
            digest = base64.b64encode(hashlib.new(alg.lower(), data).digest()).decode()
            if digest == expected.split("?", 1)[0]:
                return True
    return False


def vendor(html_dir: Path, node_modules: Path) -> dict[str, Path]:
    """Copy every asset (and its extras and licence) into ``html_dir/vendor``.

    Returns CDN URL -> copied file. Writes ``vendor/manifest.json`` recording where each file
    came from, so a reader of the published site can tell what it runs.
    """
    out = html_dir / VENDOR_DIR
    copied: dict[str, Path] = {}
    manifest: dict[str, dict[str, Any]] = {}
    for asset in ASSETS:
        pkg_dir = node_modules / asset.package
        version = _installed_version(node_modules, asset.package)
        for rel in (asset.path, *asset.extra):
            src = pkg_dir / rel
            if not src.is_file():
                raise HarnessError(f"{src} missing: is {asset.package} at the locked version?")
            dst = out / asset.package / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        for licence in sorted(pkg_dir.glob("LICEN[CS]E*")):
            shutil.copyfile(licence, out / asset.package / licence.name)
        copied[asset.url] = out / asset.package / asset.path
        manifest[asset.url] = {
            "file": f"{VENDOR_DIR}/{asset.package}/{asset.path}",
            "package": f"{asset.package}@{version}",
            "identical_to_cdn": asset.identical,
            "note": asset.note,
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return copied


def _rewrite_tag(tag: str, page: Path, html_dir: Path, unknown: list[str]) -> str:
    match = _URL_ATTR.search(tag)
    if match is None or not _REMOTE.match(match.group(4).strip()):
        return tag
    url = match.group(4).strip()
    asset = _BY_URL.get(url)
    if asset is None:
        unknown.append(url)
        return tag
    local = html_dir / VENDOR_DIR / asset.package / asset.path
    if asset.identical:
        integrity = _INTEGRITY.search(tag)
        if integrity and not _sri_matches(local.read_bytes(), integrity.group(2)):
            raise HarnessError(
                f"{local} (npm {asset.package}) differs from {url}: its hash does not match the "
                "page's integrity attribute. Is package-lock.json pinned to the version asv uses?"
            )
    rel = Path(os.path.relpath(local, page.parent)).as_posix()
    start, end = match.span(4)
    tag = tag[:start] + rel + tag[end:]
    return _CROSS_ORIGIN_ATTRS.sub("", tag)


def rewrite_pages(html_dir: Path) -> list[Path]:
    """Point every CDN script/stylesheet in ``html_dir``'s pages at ``vendor/``; return pages.

    Idempotent (rewritten tags are local and left alone). Raises if a page loads a remote file
    that :data:`ASSETS` does not cover, listing the URLs.
    """
    pages = sorted(
        p for p in html_dir.rglob("*.html") if VENDOR_DIR not in p.relative_to(html_dir).parts
    )
    unknown: list[str] = []
    changed: list[Path] = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        new = _TAG.sub(lambda m, p=page: _rewrite_tag(m.group(0), p, html_dir, unknown), text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    if unknown:
        raise HarnessError(
            "published pages load files from the network that site.ASSETS does not cover "
            f"(new asv version?): {', '.join(sorted(set(unknown)))}. Pin them in package.json "
            "and add them to ASSETS."
        )
    return changed


# --------------------------------------------------------------------------------------------
# the whole step, and serving


def build_site(
    config: Path | str = "asv.conf.json",
    html_dir: Path | None = None,
    npm_root: Path | None = None,
    *,
    attribution: bool = True,
) -> SiteReport:
    """asv publish + npm install + vendor + rewrite, the trust annotations, the attribution pages.

    ``npm_root`` defaults to :data:`NPM_ROOT`. ``attribution``: a page per flagged count step
    (:mod:`tristore_bench.site_attribution`), linked from the Regressions page.
    """
    from tristore_bench import site_attribution, site_trust

    paths = asv_paths(config)
    root = Path(npm_root).resolve() if npm_root is not None else NPM_ROOT
    target = publish(paths.config, html_dir)
    report = SiteReport(html_dir=target)
    report.npm_ran = ensure_node_modules(root)
    report.vendored = vendor(target, root / "node_modules")
    report.pages = rewrite_pages(target)
    trust = target / site_trust.DATA_FILE
    if not trust.is_file():
        raise HarnessError(f"asv publish wrote no {trust} (is tristore_bench.asv_publish current?)")
    site_trust.link_from_index(target)
    report.trust = trust
    if attribution:
        pages = site_attribution.write_pages(target, paths.repo)
        report.attribution = [p.path for p in pages]
        site_attribution.link_from_index(target)
    return report


class _SiteHandler(SimpleHTTPRequestHandler):
    """Static files with no caching (a re-publish shows on reload) and no per-request log."""

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(html_dir: Path, port: int = 0, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Bind a static server for ``html_dir`` (port 0: a free one); the caller runs it.

    Loopback only: the site is for the person at this machine, not the network.
    """
    if not (Path(html_dir) / "index.html").is_file():
        raise HarnessError(f"{html_dir} has no index.html: publish the site first")
    handler = partial(_SiteHandler, directory=str(html_dir))
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise HarnessError(f"cannot listen on {host}:{port} ({exc}); try --port 0") from exc


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}/"


@click.command("site")
@asv_config_option("asv config to publish.")
@html_dir_option("Output directory (default: html_dir from the asv config).")
@click.option(
    "--serve/--no-serve", "serve_site", default=False, show_default=True, help="Serve when built."
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Port (0: a free one).")
@click.option(
    "--attribution/--no-attribution",
    default=True,
    show_default=True,
    help="A Python-attribution page per flagged count step (natively, cached).",
)
def command(
    config: Path, html_dir: Path | None, serve_site: bool, port: int, attribution: bool
) -> None:
    """Publish the asv results as a site that needs no network, optionally serving it."""
    try:
        report = build_site(config, html_dir, attribution=attribution)
        installed = ", installed now" if report.npm_ran else ""
        click.echo(
            f"site: {report.html_dir / 'index.html'} ({len(report.vendored)} files vendored from "
            f"npm{installed}; {len(report.pages)} page(s) rewritten; "
            f"{len(report.attribution)} attribution page(s))"
        )
        if not serve_site:
            return
        server = serve(report.html_dir, port)
    except HarnessError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"serving {url_of(server)} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
