"""The secret scan of SFT data: an API key, token, private key or password in any source is
quarantined with its line and kind (or redacted, data.secrets=redact) and never reaches a prepared
row or any file of the data folder; git SHAs and digests in code are not secrets."""

from __future__ import annotations

import hashlib
import json
import random
import string
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from conftest import tiny_tokenizer
from forge import secrets
from forge.data.sft.task import SFT

TOK = tiny_tokenizer()
# Planted secrets are made at run time: no credential-shaped literal sits in the repository.
_RNG = random.Random(15)


def _random(chars: str, n: int) -> str:
    return "".join(_RNG.choice(chars) for _ in range(n))


ALNUM = string.ascii_letters + string.digits
AWS_KEY = "AKIA" + _random(string.ascii_uppercase + string.digits, 16)
GITHUB_TOKEN = "ghp_" + _random(ALNUM, 36)
SESSION_TOKEN = "ghp_" + _random(ALNUM, 36)
CODE_KEY = "AKIA" + _random(string.ascii_uppercase + string.digits, 16)
KEY_LINES = [_random(ALNUM + "+/", 64) for _ in range(4)]
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_LINES) + "\n-----END RSA PRIVATE KEY-----"
PASSWORD = "Tr0ub4dor_" + _random(ALNUM, 6)
PLANTED = [AWS_KEY, GITHUB_TOKEN, SESSION_TOKEN, CODE_KEY, PASSWORD, *KEY_LINES]
SHA1 = hashlib.sha1(b"release").hexdigest()
SHA256 = hashlib.sha256(b"release").hexdigest()


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def cc(kind: str, **fields) -> dict:
    return {"type": kind, "session_id": "s-env", "parent_tool_use_id": None, **fields}


def sources(root: Path) -> list[dict]:
    """One file per format, each with clean records around the planted ones."""
    lines = {
        "messages.jsonl": [chat("Deploy the app.", "Run make deploy."),
                           chat(f"My key is {AWS_KEY}; why does s3 ls fail?", "Check the bucket's region."),
                           chat("Push the branch.", f"Done, with the token {GITHUB_TOKEN}."),
                           chat("Say hello.", "Hello.")],
        "alpaca.jsonl": [{"instruction": "What is this file?", "input": PRIVATE_KEY, "output": "An RSA private key."},
                         {"instruction": "Fix the settings.", "input": "", "output": f'db_password = "{PASSWORD}"'},
                         {"instruction": "Name a prime.", "input": "", "output": "Seven."}],
        "pinned.jsonl": [{"prompt": 'def release():\n    """The pinned commit and digest of the release."""\n',
                          "completion": f'    commit = "{SHA1}"\n    digest = "sha256:{SHA256}"\n    return commit, digest\n'}],
        "session.jsonl": [
            cc("system", subtype="init", tools=["Bash"]),
            cc("user", message={"role": "user", "content": [{"type": "text", "text": "Is the token set?"}]}),
            cc("assistant", message={"id": "m1", "role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "cat .env"}}]}),
            cc("user", message={"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": f"GITHUB_TOKEN={SESSION_TOKEN}\n"}]}),
            cc("assistant", message={"id": "m2", "role": "assistant", "content": [{"type": "text", "text": "Yes, it is set."}]}),
            {"type": "result", "subtype": "success", "is_error": False, "session_id": "s-env", "result": "Yes, it is set."},
        ],
    }
    # Splits are drawn per record from its path: enough clean ones that none comes out empty.
    lines["filler.jsonl"] = [chat(f"What is {i} + 1?", f"{i + 1}.") for i in range(40)]
    for name, records in lines.items():
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    code = root / "code"
    code.mkdir()
    (code / "cloud.py").write_text(
        "def client_settings():\n"
        '    """The settings of the storage client."""\n'
        "    region = 'eu-west-1'\n"
        f"    key_id = '{CODE_KEY}'\n"
        "    return region, key_id\n"
        "\n\n"
        "def release_commit():\n"
        '    """The commit the release was built from."""\n'
        f"    commit = '{SHA1}'\n"
        "    short = commit[:8]\n"
        "    return short\n"
    )
    return [{"format": "messages", "path": str(root / "messages.jsonl")}, {"format": "messages", "path": str(root / "filler.jsonl")},
            {"format": "alpaca", "path": str(root / "alpaca.jsonl")},
            {"format": "prompt_completion", "path": str(root / "pinned.jsonl")},
            {"format": "claude_code", "path": str(root / "session.jsonl"), "kinds": None, "successful_only": True},
            {"format": "python_code", "path": str(code)}]


def prepare(tmp_path: Path, action: str) -> tuple[Path, dict, str]:
    """The data folder, its meta.json and the text of every prepared row, decoded."""
    (tmp_path / "src").mkdir()
    task = SFT(sources(tmp_path / "src"), 512, True, 0.3, 0.3, 1, TOK, secrets=action)
    out = tmp_path / "data"
    out.mkdir()
    meta = task.write(out)
    rows = [TOK.decode(row) for split in ("train", "val", "test") for row in load_file(str(out / f"{split}.safetensors"))["inputs"]]
    return out, meta, "\n".join(rows)


def assert_nowhere(folder: Path, rows: str) -> None:
    for secret in (s for planted in PLANTED for s in (planted, planted[4:])):  # whole, and past its prefix
        assert secret not in rows, f"{secret} reached a prepared row"
        for f in folder.rglob("*"):
            assert not f.is_file() or secret.encode() not in f.read_bytes(), f"{secret} is in {f.name}"


def test_a_record_holding_a_secret_is_quarantined_with_its_line_and_kind(tmp_path: Path) -> None:
    folder, meta, rows = prepare(tmp_path, "quarantine")
    lines = [json.loads(x) for x in (folder / "quarantine.jsonl").read_text().splitlines()]
    assert [(Path(x["file"]).name, x["line"], x["error"].split(")")[0]) for x in lines] == [
        ("messages.jsonl", 2, "holds a secret (AWS Access Key"),
        ("messages.jsonl", 3, "holds a secret (GitHub Token"),
        ("alpaca.jsonl", 1, "holds a secret (Private Key"),
        ("alpaca.jsonl", 2, "holds a secret (Secret Keyword"),
        ("session.jsonl", 1, "holds a secret (GitHub Token"),
        ("cloud.py", 1, "holds a secret (AWS Access Key"),
    ]
    assert "[REDACTED:AWS Access Key]" in lines[0]["text"] and "[REDACTED:Private Key]" in lines[2]["text"], "shown redacted"
    assert_nowhere(folder, rows)
    for kept in ("Run make deploy.", "Hello.", "Seven.", SHA1, SHA256, "Is the token set?", "return short"):
        assert kept in rows, f"{kept!r}: a clean example (git SHAs and digests included) was lost"
    assert meta["secret_scan"] == {"action": "quarantine", "examples_scanned": 53,
                                   "found": {"AWS Access Key": 2, "GitHub Token": 2, "Private Key": 1, "Secret Keyword": 1}}
    assert meta["quarantined"] == 6


def test_redact_keeps_the_example_with_each_secret_replaced(tmp_path: Path) -> None:
    folder, meta, rows = prepare(tmp_path, "redact")
    assert (folder / "quarantine.jsonl").read_text() == ""
    for shown in ("My key is [REDACTED:AWS Access Key]; why", "with the token [REDACTED:GitHub Token].",
                  "db_password = \"[REDACTED:Secret Keyword]\"", "[REDACTED:Private Key]",
                  "GITHUB_TOKEN=[REDACTED:GitHub Token]", "key_id = '[REDACTED:AWS Access Key]'"):
        assert shown in rows
    assert_nowhere(folder, rows)
    assert meta["secret_scan"]["action"] == "redact" and meta["secret_scan"]["found"]["GitHub Token"] == 2


def test_a_malformed_line_holding_a_secret_is_shown_redacted(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    bad = tmp_path / "src" / "bad.jsonl"
    bad.write_text(json.dumps(chat("ok", "fine")) + "\n" + '{"messages": [{"role": "user", "content": "password = \\"' + PASSWORD
                   + '\\" and ' + AWS_KEY + '"}\n' + "".join(json.dumps(chat(f"q{i}", f"a{i}")) + "\n" for i in range(40)))
    task = SFT([{"format": "messages", "path": str(bad)}], 256, True, 0.3, 0.3, 1, TOK)
    (tmp_path / "data").mkdir()
    task.write(tmp_path / "data")
    (line,) = [json.loads(x) for x in (tmp_path / "data" / "quarantine.jsonl").read_text().splitlines()]
    assert line["line"] == 2 and line["error"].startswith("invalid JSON")
    assert PASSWORD not in line["text"] and AWS_KEY not in line["text"]
    assert "[REDACTED:Secret Keyword]" in line["text"] and "[REDACTED:AWS Access Key]" in line["text"]


@pytest.mark.parametrize("text", [
    f"commit {SHA1}\nAuthor: Dev <dev@example.org>", f"{SHA256}  dist/forge-1.0.tar.gz", "data:image/png;base64," + "iVBORw0KGgo" * 40,
    'api_key = "YOUR_API_KEY"', 'password = os.environ["DB_PASSWORD"]', 'if password == "":', 'PASSWORD = "PASSWORD"',
    "pem = b'-----BEGIN RSA PRIVATE KEY-----'  # the marker this parser looks for", "AKIAIOSFODNN7EXAMPLE is AWS's documented key",
    "postgres://user:password@localhost/db", "curl http://admin:pass@localhost:8080/", "ACCATCTCTACCGGTTCGCTAGCT is the probe",
])
def test_code_and_logs_are_not_secrets(text: str) -> None:
    assert secrets.find(text) == []


@pytest.mark.parametrize("text, kind", [
    (f"export AWS_ACCESS_KEY_ID={AWS_KEY}", "AWS Access Key"),
    (f"token: {GITHUB_TOKEN}", "GitHub Token"),
    (PRIVATE_KEY, "Private Key"),
    (f'db_password = "{PASSWORD}"', "Secret Keyword"),
    (f'{{"password": "{PASSWORD}"}}', "Secret Keyword"),
    (f"https://deploy:{PASSWORD}@git.internal/repo.git", "Basic Auth Credentials"),
    ("sk-proj-" + _random(ALNUM, 20) + "T3BlbkFJ" + _random(ALNUM, 20), "OpenAI Token"),
    ("sk-ant-api03-" + _random(ALNUM + "-_", 93) + "AA", "Anthropic API Key"),
    ("HF_TOKEN=hf_" + _random(string.ascii_letters, 34), "Hugging Face Token"),
])
def test_each_kind_is_found_and_redacted(text: str, kind: str) -> None:
    found = secrets.find(text)
    assert [s.kind for s in found] == [kind]
    redacted = secrets.redact(text, found)
    assert f"[REDACTED:{kind}]" in redacted and secrets.find(redacted) == []
    assert all(s.value[4:] not in redacted for s in found) and all(line not in redacted for line in KEY_LINES)


def test_the_keyword_prefilter_lets_every_detect_secrets_keyword_through() -> None:
    """The keyword plugin only sees lines holding one of the coarse marks; each keyword of its
    denylist must contain one, or its assignments would go unseen."""
    from detect_secrets.plugins.keyword import DENYLIST

    scanner = secrets._scanner()
    for spelling in scanner.spellings:
        assert any(mark.decode() in spelling for mark in scanner.keywords), spelling
        assert secrets.find(f'{spelling} = "{PASSWORD}"') == [secrets.Secret("Secret Keyword", PASSWORD)], spelling
    assert len(scanner.spellings) >= len(DENYLIST)


def test_the_option_is_checked_and_is_part_of_the_data_key() -> None:
    from forge.config.compose import compose
    from forge.config.errors import ConfigError
    from forge.config.validate import validate
    from forge.data.prepare import fingerprint

    cfg, origin = compose(["+recipe=coder_lora"])
    data = validate(cfg, origin.where).data
    assert data.secrets == "quarantine", "the default"
    redacting = data.copy()
    redacting.secrets = "redact"
    assert fingerprint(data) != fingerprint(redacting), "prepared once per action"
    cfg, origin = compose(["+recipe=coder_lora", "data.secrets=keep"])
    with pytest.raises(ConfigError, match="data.secrets=keep: not a valid choice"):
        validate(cfg, origin.where)
