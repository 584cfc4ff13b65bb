"""The leaked-token rules in docs/secret-scanning, as a CI job runs them: detect-secrets with
the plugin over files, and the gitleaks rule's regex (gitleaks itself is a Go binary no
package here installs; the regex is RE2 and reads the same in Python's ``re``)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
import string
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from guard import TokenCodec
from tests.conftest import PEPPER, SECRET

RULES = Path(__file__).resolve().parents[1] / "docs" / "secret-scanning"
DETECT_SECRETS = Path(sys.executable).with_name("detect-secrets")
#: What a token is written in: base64url, and the dots between its parts.
ALPHABET = string.ascii_letters + string.digits + "-_."


@pytest.fixture(scope="module")
def tokens() -> list[str]:
    codec = TokenCodec([SECRET], [PEPPER])
    return [codec.issue(codec.new_key_id()).token for _ in range(200)]


def detect_secrets(directory: Path) -> list[dict[str, object]]:
    """What the plugin reports for the files in ``directory`` (other plugins' findings,
    such as detect-secrets' own high-entropy ones, are theirs)."""
    done = subprocess.run(
        [str(DETECT_SECRETS), "scan", "--all-files", "--plugin", str(RULES / "guard_tokens.py")],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout)["results"]
    return [r for rs in found.values() for r in rs if r["type"] == "flask-api-guard token"]


def gitleaks_regex() -> re.Pattern[str]:
    [rule] = tomllib.loads((RULES / "gitleaks.toml").read_text())["rules"]
    assert rule["secretGroup"] == 1 and rule["keywords"] == ["gk_"]
    # RE2 has no lookarounds or backreferences: a rule using them would not load in gitleaks.
    assert not re.search(r"\(\?<?[=!]|\\[1-9]", rule["regex"])
    return re.compile(rule["regex"], re.MULTILINE)


def random_strings(length: int, count: int = 1000) -> list[str]:
    chance = random.Random(24)
    return ["".join(chance.choice(ALPHABET) for _ in range(length)) for _ in range(count)]


def test_a_real_token_is_found_where_it_leaks(tmp_path: Path, tokens: list[str]) -> None:
    token = tokens[0]
    (tmp_path / "deploy.sh").write_text(
        f'curl -H "Authorization: Bearer {token}" https://api.example.com/orders\n'
        f"export API_KEY='{tokens[1]}'\n"
        f'{{"api_key": "{tokens[2]}"}}\n'
    )
    found = detect_secrets(tmp_path)
    sha1 = {hashlib.sha1(t.encode()).hexdigest(): t for t in tokens[:3]}  # noqa: S324
    assert sorted((r["line_number"], sha1[str(r["hashed_secret"])]) for r in found) == [
        (1, tokens[0]),
        (2, tokens[1]),
        (3, tokens[2]),
    ]
    text = (tmp_path / "deploy.sh").read_text()
    assert [m.group(1) for m in gitleaks_regex().finditer(text)] == tokens[:3]


def test_every_shape_of_token_the_guard_issues_is_found(tokens: list[str]) -> None:
    # Signatures end in any of the 16 characters whose unused bits are zero: all covered.
    assert len({token[-1] for token in tokens}) == 16
    text = "\n".join(tokens)
    assert [m.group(1) for m in gitleaks_regex().finditer(text)] == tokens
    # Loaded from its file, as detect-secrets' --plugin loads it.
    spec = importlib.util.spec_from_file_location("guard_tokens", RULES / "guard_tokens.py")
    assert spec is not None and spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    assert plugin.TOKEN.findall(text) == tokens
    assert list(plugin.GuardTokenDetector().analyze_string(f"key={tokens[0]};")) == [tokens[0]]


def test_random_strings_of_the_same_alphabet_and_length_are_not_found(
    tmp_path: Path, tokens: list[str]
) -> None:
    noise = random_strings(len(tokens[0]))
    (tmp_path / "noise.txt").write_text("\n".join(noise) + "\n")
    assert detect_secrets(tmp_path) == []
    assert gitleaks_regex().search("\n".join(noise)) is None


def test_near_misses_are_not_found(tmp_path: Path, tokens: list[str]) -> None:
    token = tokens[0]
    misses = [
        token[:-1],  # cut short
        token + "A",  # part of a longer string
        "x" + token,
        token[:-1] + "B",  # a signature the guard never issues
        "gh_" + token[3:],  # another prefix
        token.replace(".", "_", 1),
    ]
    (tmp_path / "misses.txt").write_text("\n".join(misses) + "\n")
    assert detect_secrets(tmp_path) == []
    assert gitleaks_regex().search("\n".join(misses)) is None
