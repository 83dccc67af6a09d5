"""The `data` option for SFT: sources in, packed token rows per split out.

Preparation streams: records are read line by line, tokenized and packed as they come, and rows
go straight to disk, so memory does not grow with the dataset (only the set of 20-byte hashes
used to deduplicate code does). Bad records are never dropped silently: each one is written to
`quarantine.jsonl` with its file, line number and error, and counted in meta.json.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from forge.data import tokenizer_files
from forge.data.configs import SFT_FORMATS
from forge.data.sft import agent_traces, detect, formats
from forge.data.sft.examples import BadRecord, Example
from forge.data.sft.pack import Packer
from forge.data.sft.python_code import code_examples, humaneval_keys, source_files
from forge.data.sft.records import Quarantine, data_files, read_jsonl
from forge.data.sft.rows import ROWS_VERSION, RowWriter
from forge.data.sft.secrets import RedactingQuarantine, SecretScan
from forge.data.sft.tokenize import Encoder
from forge.data.task import SPLITS
from forge.errors import ForgeError

log = logging.getLogger(__name__)


def fit(ids: list[int], mask: list[bool], seq_len: int) -> tuple[list[int], list[bool]]:
    """Cut an example to seq_len tokens: its end goes when a scored token lies within the
    first seq_len, otherwise its middle (the opening quarter and the scored end stay: a long
    agent session keeps its task and the turn being learned)."""
    first = mask.index(True) if True in mask else len(mask)
    if first < seq_len - 1:
        return ids[:seq_len], mask[:seq_len]
    head = seq_len // 4
    return ids[:head] + ids[len(ids) - (seq_len - head) :], mask[:head] + mask[len(mask) - (seq_len - head) :]


def _failure(empty: list[str], groups: int, stats: dict[str, Counter], fractions: dict[str, float],
             counts: Counter[str], quarantine: Quarantine) -> str:
    """Why a prepare produced no usable split, with everything that happened to the input."""
    examples = sum(c["examples"] for c in stats.values())
    if examples == 0:
        head = "data: no example to train on"
    else:
        where = ", ".join(f"{s} {stats[s]['examples']}" for s in SPLITS)
        head = (f"data: the {' and '.join(empty)} split came out empty: {examples} examples from {groups} session(s)/file(s) "
                f"went to {where} (a session or file stays whole in one split; "
                + ", ".join(f"data.{s}_fraction={fractions[s]}" for s in empty) + ")")

    def by(prefix: str) -> str:
        found = {k[len(prefix):]: n for k, n in sorted(counts.items()) if k.startswith(prefix)}
        return f"{sum(found.values())}" + (f" ({', '.join(f'{k} {n}' for k, n in found.items())})" if found else "")

    read = ", ".join(f"{counts[f'read.{k}']} {k}" for k in ("files", "records", "sessions") if counts[f"read.{k}"])
    first = "; ".join(f"{Path(f).name}:{n}: {e}" for f, n, e in quarantine.first)
    parts = [head, f"read {read or 'nothing'}", f"skipped {by('skipped.')}", f"filtered {by('filtered.')}",
             f"quarantined {quarantine.total}" + (f" (first: {first})" if first else "")]
    hints = []
    if counts["skipped.sessions_without_prompt"]:
        hints.append("logs without their prompt need data.sources.N.prompt (or prompt_file), or recording with "
                     "--input-format stream-json --replay-user-messages")
    if counts["filtered.unjudged_sessions"]:
        hints.append("sessions without a result line (on-disk transcripts) are used only with successful_only=false")
    hints.append(f"set data.{empty[0]}_fraction=0 or add data" if examples else "fix the sources")
    return "; ".join(parts) + ". To do: " + "; ".join(hints) + "."


class SFT:
    needs_tokenizer = True  # text is tokenized with the model's tokenizer, which `prepare` passes

    def __init__(
        self, sources: list[dict[str, Any]], seq_len: int, packing: bool, val_fraction: float, test_fraction: float,
        seed: int, tokenizer: Any, secrets: str = "quarantine",
    ) -> None:
        for i, s in enumerate(sources):
            if s.get("format") not in SFT_FORMATS:
                raise ValueError(f"data.sources.{i}.format={s.get('format')!r}: choose one of {', '.join(SFT_FORMATS)}")
        if not 0 <= val_fraction + test_fraction < 1:
            raise ValueError("data.val_fraction + data.test_fraction must be in [0, 1)")
        self.sources, self.seq_len, self.packing = sources, seq_len, packing
        self.fractions, self.seed, self.tokenizer = (val_fraction, test_fraction), seed, tokenizer
        self.formats: dict[str, dict[str, int]] = {}  # per source: how many files were read as each format
        self.kept_on_failure = ("quarantine.jsonl",)  # what a failed prepare leaves for the user to read
        self.secrets = secrets

    def content_key(self) -> dict[str, Any]:
        """What the prepared rows depend on besides the config: the tokenizer, the input bytes and
        the columns written (data prepared before a column existed is not reused without it)."""
        tok = self.tokenizer
        tok_blob = tok.backend_tokenizer.to_str() + str(tok.chat_template) + f"{tok.eos_token_id},{tok.pad_token_id}"
        files = hashlib.sha256()
        for entry in self.inputs():
            files.update(entry["path"].encode())
            files.update(bytes.fromhex(entry["sha256"]))
        return {"tokenizer": hashlib.sha256(tok_blob.encode()).hexdigest()[:16], "files": files.hexdigest()[:16],
                "rows": ROWS_VERSION}

    @functools.cache
    def inputs(self) -> list[dict[str, str]]:
        """Every file read (and its SHA-256), kept in meta.json: a registered model's version
        records the data it was trained on from it, which tells a later round what is used."""
        out = []
        for source in self.sources:
            extra = [Path(source["prompt_file"])] if source.get("prompt_file") else []
            for f in [*self._files(source), *extra]:
                out.append({"path": str(f), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
        return out

    def write(self, folder: Path) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        writers = {s: RowWriter(folder, s, self.seq_len) for s in SPLITS}
        packers = {s: Packer(self.seq_len, self.tokenizer.pad_token_id, self.packing) for s in SPLITS}
        stats = {s: Counter() for s in SPLITS}
        groups: set[str] = set()
        scan = SecretScan(self.secrets)
        with open(folder / "quarantine.jsonl", "w", encoding="utf-8") as qf:
            quarantine, encoder = RedactingQuarantine(qf), Encoder(self.tokenizer)
            for example, where in self._examples(quarantine, counts):
                example, kinds = scan.check(example)
                if kinds and scan.action == "quarantine":
                    error = f"holds a secret ({', '.join(kinds)}), shown redacted; data.secrets=redact would train on it redacted"
                    quarantine.add(where[0], where[1], error, json.dumps(example.__dict__))
                    continue
                try:
                    ids, mask = encoder(example, counts)
                except BadRecord as e:
                    quarantine.add(where[0], where[1], str(e), json.dumps(example.__dict__)[:2000])
                    continue
                if len(ids) > self.seq_len:
                    ids, mask = fit(ids, mask, self.seq_len)
                    counts["truncated"] += 1
                if not any(mask[1:]):
                    quarantine.add(where[0], where[1], f"no scored token within seq_len={self.seq_len}", json.dumps(example.__dict__)[:2000])
                    continue
                split = self._split(example.group)
                stats[split].update(examples=1, tokens=len(ids), scored_tokens=sum(mask[1:]))
                groups.add(example.group)
                for row in packers[split].add(ids, mask, example.reward):
                    writers[split].append(*row)
            for split in SPLITS:
                for row in packers[split].flush():
                    writers[split].append(*row)
        # Rows carry a reward when every example had one (agent runs): replay by reward surprise.
        with_reward = all(w.rewarded == w.rows for w in writers.values()) and any(w.rewarded for w in writers.values())
        sizes = {}
        for split, writer in writers.items():
            writer.close(with_reward)
            sizes[split] = writer.rows
            stats[split]["rows"] = writer.rows
        fractions = {"train": 1.0, "val": self.fractions[0], "test": self.fractions[1]}
        empty = [s for s in SPLITS if sizes[s] == 0 and fractions[s] > 0]
        if empty:
            raise ForgeError(_failure(empty, len(groups), stats, fractions, counts, quarantine))
        return {
            "vocab_size": len(self.tokenizer),
            "seq_len": self.seq_len,
            "sizes": sizes,
            "splits": {s: dict(c) for s, c in stats.items()},
            "row_rewards": with_reward,
            "quarantined": quarantine.total,
            "quarantined_by_file": dict(quarantine.counts),
            "counts": dict(sorted(counts.items())),
            "formats": self.formats,
            "pad_id": self.tokenizer.pad_token_id,
            "chat_template": self.tokenizer.chat_template,
            "secret_scan": scan.meta(),
            "inputs": self.inputs(),
            "tokenizer_files": tokenizer_files.digest(Path(self.tokenizer.name_or_path)),
        }

    def _split(self, group: str) -> str:
        u = int.from_bytes(hashlib.sha1(f"{self.seed}:{group}".encode()).digest()[:8], "big") / 2**64
        val, test = self.fractions
        return "test" if u < test else "val" if u < test + val else "train"

    def _files(self, source: dict[str, Any]) -> list[Path]:
        if source["format"] == "python_code":
            return source_files(source["path"])
        path = Path(source["path"])
        if not path.exists():
            raise ForgeError(f"data.sources: {path} does not exist (paths are relative to {Path.cwd()})")
        return data_files(path)

    def _format(self, i: int, source: dict[str, Any], file: Path) -> str:
        """The format `file` is read as: the declared one, checked against what its first records
        look like, or for `auto` the one they are in."""
        declared = source["format"]
        records = detect.first_records(file)
        seen = detect.file_format(records)
        if declared == "auto":
            if seen is None:
                raise ForgeError(
                    f"data.sources.{i}.format=auto: cannot tell the format of {file} from its first records "
                    f"(keys: {detect.keys_text(records)}); set data.sources.{i}.format to one of {', '.join(SFT_FORMATS[1:-1])}"
                )
            return seen
        if seen is not None and seen != declared and not any(self._parses(declared, r, source) for r in records):
            raise ForgeError(
                f"data.sources.{i}.format={declared}: {file} looks like {seen}, not {declared} (its first records have "
                f"{detect.keys_text(records)}); set data.sources.{i}.format={seen} or format=auto"
            )
        return declared

    @staticmethod
    def _parses(fmt: str, record: Any, source: dict[str, Any]) -> bool:
        if fmt == "claude_code":
            return detect.record_format(record) == "claude_code"
        try:
            _parser(fmt, source)(record, "")
        except formats.BelowThreshold:
            return True
        except BadRecord:
            return False
        return True

    def _examples(self, quarantine: Quarantine, counts: Counter[str]) -> Iterator[tuple[Example, tuple[str, int]]]:
        for i, source in enumerate(self.sources):
            if source["format"] == "python_code":
                exclude = humaneval_keys()
                for ex, line in code_examples(source["path"], quarantine, counts, source.get("min_lines", 3), source.get("max_lines", 40), exclude):
                    yield ex, (ex.group, line)
                continue
            chosen: Counter[str] = Counter()
            for file in self._files(source):
                fmt = self._format(i, source, file)
                chosen[fmt] += 1
                counts["read.files"] += 1
                if fmt == "claude_code":
                    yield from self._sessions(file, source, quarantine, counts)
                    continue
                parse = _parser(fmt, source)
                for number, record in read_jsonl(file, quarantine):
                    counts["read.records"] += 1
                    try:
                        for ex in parse(record, f"{file}:{number}"):
                            yield ex, (str(file), number)
                    except formats.BelowThreshold:
                        counts["filtered.below_reward_threshold"] += 1
                    except BadRecord as e:
                        quarantine.add(file, number, str(e), json.dumps(record))
            if source["format"] == "auto":
                log.info("data.sources.%d (format auto): %s", i, ", ".join(f"{n} file(s) {f}" for f, n in sorted(chosen.items())))
            self.formats[f"sources.{i}"] = dict(chosen)

    def _sessions(self, file: Path, source: dict, quarantine: Quarantine, counts: Counter[str]) -> Iterator[tuple[Example, tuple[str, int]]]:
        kinds = tuple(source.get("kinds") or agent_traces.KINDS)
        prompt = _prompt(source)
        for session in agent_traces.read_sessions(file, quarantine, counts):
            counts["read.sessions"] += 1
            verdict = agent_traces.succeeded(session)
            if source.get("successful_only", True) and not verdict:
                counts["filtered.unjudged_sessions" if verdict is None else "filtered.unsuccessful_sessions"] += 1
                continue
            try:
                examples = agent_traces.session_examples(session, kinds, counts, prompt)
            except BadRecord as e:
                quarantine.add(file, session.first_line, str(e), "")
                continue
            for ex in examples:
                yield ex, (str(file), session.first_line)


def _parser(fmt: str, source: dict[str, Any]) -> Callable[[Any, str], list[Example]]:
    return formats.PARSERS.get(fmt) or formats.agent_run(source.get("reward_weights") or {}, source.get("min_reward"))


def _prompt(source: dict[str, Any]) -> Optional[str]:
    """The prompt a source gives for logs recorded without theirs."""
    if source.get("prompt_file"):
        path = Path(source["prompt_file"])
        if not path.is_file():
            raise ForgeError(f"data.sources: prompt_file {path} does not exist (paths are relative to {Path.cwd()})")
        return path.read_text(encoding="utf-8").strip()
    return source.get("prompt")
