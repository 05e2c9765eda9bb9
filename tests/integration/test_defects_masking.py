"""Probe finding: no Redis credential form redis-py accepts is ever printed.

Run against the session's real redis-server, which requires a password: each URL form below
really authenticates, so the secret really is in play when the output is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tristore.config import Settings, redact_text
from tristore.stores import CacheStore
from tristore.testing import store_settings


def _forms(server: Any, password: str) -> dict[str, str]:
    secret = quote(password, safe="")
    at = f"{server.host}:{server.port}"
    return {
        "query": f"redis://{at}/0?password={secret}",
        "user_and_password": f"redis://default:{secret}@{at}/0",
        "password_only": f"redis://:{secret}@{at}/0",
        "query_among_others": f"redis://{at}/0?socket_timeout=5&password={secret}&db=0",
    }


def _doctor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRISTORE_")}
    environ.update({"TRISTORE_DATA_DIR": str(tmp_path / "data")}, **env)
    return subprocess.run(
        [sys.executable, "-m", "tristore.cli", "doctor", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,  # a hang guard only
    )


@pytest.mark.parametrize("form", ["query", "user_and_password", "password_only"])
@pytest.mark.parametrize("as_json", [False, True])
def test_doctor_never_prints_the_password(
    tmp_path: Path, tristore_redis_server: Any, form: str, as_json: bool
) -> None:
    url = _forms(tristore_redis_server, tristore_redis_server.password)[form]
    done = _doctor(tmp_path, *(["--json"] if as_json else []), TRISTORE_REDIS_URL=url)
    assert done.returncode == 0, done.stdout + done.stderr  # it authenticated with that form
    assert tristore_redis_server.password not in done.stdout + done.stderr
    assert "***" in done.stdout
    if as_json:
        redis = next(r for r in json.loads(done.stdout) if r["store"] == "redis")
        assert redis["ok"] and tristore_redis_server.password not in redis["settings"]["url"]


def test_doctor_never_prints_a_wrong_password(tmp_path: Path, tristore_redis_server: Any) -> None:
    wrong = "not-the-password-9f3c"
    url = _forms(tristore_redis_server, wrong)["query"]
    done = _doctor(tmp_path, TRISTORE_REDIS_URL=url)
    assert done.returncode == 1
    assert any(line.startswith("FAIL  redis") for line in done.stdout.splitlines())
    assert wrong not in done.stdout + done.stderr


async def test_reports_of_a_connected_store_are_masked(
    tmp_path: Path, tristore_redis_server: Any
) -> None:
    password = tristore_redis_server.password
    for url in _forms(tristore_redis_server, password).values():
        settings = store_settings(tmp_path, url)
        async with CacheStore(settings) as cache:
            assert await cache.execute("PING")
            shown = json.dumps([await cache.effective_settings(), settings.redacted()])
        # redacted() is what the load reports and results write out.
        assert password not in shown, url
        assert password not in repr(settings)


def test_free_text_is_masked_in_every_form() -> None:
    url = "redis://u:p%40ss@h:1/0?ssl_password=t0k&password=q%2Fw"
    text = "failed: p%40ss p@ss t0k q%2Fw q/w"
    assert redact_text(text, url) == "failed: *** *** *** *** ***"
    assert redact_text("redis://pw@h:1/0", "redis://pw@h:1/0") == "redis://***@h:1/0"
    assert Settings().replace(redis={"url": url}).redacted()["redis"]["url"] == (
        "redis://u:***@h:1/0?ssl_password=***&password=***"
    )
