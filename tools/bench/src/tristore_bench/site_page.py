"""Edits of asv's published ``index.html``: the site's own scripts, loaded after asv's."""

from __future__ import annotations

from pathlib import Path

from tristore_bench.asv import HarnessError

__all__ = ["add_script"]


def add_script(page: Path, src: str, purpose: str) -> bool:
    """Load the script ``src`` at the end of ``page``'s body (once); True if the page changed.

    ``purpose`` names what the script adds, for the error when the page has no body to add to.
    """
    tag = f'<script src="{src}"></script>'
    text = page.read_text(encoding="utf-8")
    if tag in text:
        return False
    if "</body>" not in text:
        raise HarnessError(f"{page} has no </body>: cannot add {purpose}")
    page.write_text(text.replace("</body>", f"{tag}\n</body>", 1), encoding="utf-8")
    return True
