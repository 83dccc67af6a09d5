"""The `data` option for SFT: sources in, packed token rows per split out.

Preparation streams: records are read line by line, tokenized and packed as they come, and rows
go straight to disk, so memory does not grow with the dataset (only the set of 20-byte hashes
used to deduplicate code does). Bad records are never dropped silently: each one is written to
`quarantine.jsonl` with its file, line number and error, and counted in meta.json.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from forge.data.configs import SFT_FORMATS
from forge.data.sft import agent_traces, formats
from forge.data.sft.examples import BadRecord, Example
from forge.data.sft.pack import Packer
from forge.data.sft.python_code import code_examples, humaneval_keys, source_files
from forge.data.sft.records import Quarantine, data_files, read_jsonl
from forge.data.sft.rows import RowWriter
from forge.data.sft.secrets import RedactingQuarantine, SecretScan
from forge.data.sft.tokenize import encode
from forge.data.task import SPLITS
from forge.errors import ForgeError

def fit(ids: list[int], mask: list[bool], seq_len: int) -> tuple[list[int], list[bool]]:
    """Cut an example to seq_len tokens: its end goes when a scored token lies within the
    first seq_len, otherwise its middle (the opening quarter and the scored end stay: a long
    agent session keeps its task and the turn being learned)."""
    first = mask.index(True) if True in mask else len(mask)
    if first < seq_len - 1:
        return ids[:seq_len], mask[:seq_len]
    head = seq_len // 4
    return ids[:head] + ids[len(ids) - (seq_len - head) :], mask[:head] + mask[len(mask) - (seq_len - head) :]


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
        self.secrets = secrets

    def content_key(self) -> dict[str, Any]:
        """What the prepared rows depend on besides the config: the tokenizer and the input bytes."""
        tok = self.tokenizer
        tok_blob = tok.backend_tokenizer.to_str() + str(tok.chat_template) + f"{tok.eos_token_id},{tok.pad_token_id}"
        files = hashlib.sha256()
        for source in self.sources:
            for f in self._files(source):
                files.update(str(f).encode())
                files.update(hashlib.sha256(f.read_bytes()).digest())
        return {"tokenizer": hashlib.sha256(tok_blob.encode()).hexdigest()[:16], "files": files.hexdigest()[:16]}

    def write(self, folder: Path) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        writers = {s: RowWriter(folder, s, self.seq_len) for s in SPLITS}
        packers = {s: Packer(self.seq_len, self.tokenizer.pad_token_id, self.packing) for s in SPLITS}
        stats = {s: Counter() for s in SPLITS}
        scan = SecretScan(self.secrets)
        with open(folder / "quarantine.jsonl", "w", encoding="utf-8") as qf:
            quarantine = RedactingQuarantine(qf)
            for example, where in self._examples(quarantine, counts):
                example, kinds = scan.check(example)
                if kinds and scan.action == "quarantine":
                    error = f"holds a secret ({', '.join(kinds)}), shown redacted; data.secrets=redact would train on it redacted"
                    quarantine.add(where[0], where[1], error, json.dumps(example.__dict__))
                    continue
                try:
                    ids, mask = encode(self.tokenizer, example)
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
                for row in packers[split].add(ids, mask):
                    writers[split].append(*row)
            for split in SPLITS:
                for row in packers[split].flush():
                    writers[split].append(*row)
        sizes = {}
        for split, writer in writers.items():
            writer.close()
            sizes[split] = writer.rows
            stats[split]["rows"] = writer.rows
        empty = [s for s in SPLITS if sizes[s] == 0]
        if empty:
            raise ForgeError(
                f"data: split(s) {', '.join(empty)} came out empty ({dict(stats['train'])} in train): there are too few "
                "source files/sessions for data.val_fraction/test_fraction; add data or raise the fractions"
            )
        return {
            "vocab_size": len(self.tokenizer),
            "seq_len": self.seq_len,
            "sizes": sizes,
            "splits": {s: dict(c) for s, c in stats.items()},
            "quarantined": quarantine.total,
            "quarantined_by_file": dict(quarantine.counts),
            "counts": dict(counts),
            "pad_id": self.tokenizer.pad_token_id,
            "chat_template": self.tokenizer.chat_template,
            "secret_scan": scan.meta(),
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

    def _examples(self, quarantine: Quarantine, counts: Counter[str]) -> Iterator[tuple[Example, tuple[str, int]]]:
        for source in self.sources:
            fmt = source["format"]
            if fmt == "python_code":
                exclude = humaneval_keys()
                for ex, line in code_examples(source["path"], quarantine, counts, source.get("min_lines", 3), source.get("max_lines", 40), exclude):
                    yield ex, (ex.group, line)
                continue
            for file in self._files(source):
                if fmt == "claude_code":
                    yield from self._sessions(file, source, quarantine, counts)
                    continue
                parse = formats.PARSERS.get(fmt) or formats.agent_run(source.get("reward_weights") or {}, source.get("min_reward"))
                for number, record in read_jsonl(file, quarantine):
                    try:
                        for ex in parse(record, f"{file}:{number}"):
                            yield ex, (str(file), number)
                    except formats.BelowThreshold:
                        counts["below_reward_threshold"] += 1
                    except BadRecord as e:
                        quarantine.add(file, number, str(e), json.dumps(record))

    def _sessions(self, file: Path, source: dict, quarantine: Quarantine, counts: Counter[str]) -> Iterator[tuple[Example, tuple[str, int]]]:
        kinds = tuple(source.get("kinds") or agent_traces.KINDS)
        for session in agent_traces.read_sessions(file, quarantine, counts):
            if source.get("successful_only", True) and not agent_traces.succeeded(session):
                counts["unsuccessful_sessions"] += 1
                continue
            try:
                examples = agent_traces.session_examples(session, kinds, counts)
            except BadRecord as e:
                quarantine.add(file, session.first_line, str(e), "")
                continue
            counts["sessions"] += 1
            for ex in examples:
                yield ex, (str(file), session.first_line)
