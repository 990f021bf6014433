"""A Dockerfile parser and the hadolint rules that matter for this image, in Python.

No container engine or hadolint binary runs here. The rules keep hadolint's codes so that
a finding can be looked up; the image-specific ones (no compiler in the final stage, OCI
labels, non-root) carry an ``FE`` code.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

_COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cc|rustc|cargo)\b")
_OCI_LABELS = ("title", "description", "version", "licenses")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ``ARG`` defaults and the stages, with line continuations joined."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append((start, pending + line))
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], ""), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append(Instruction(keyword, rest, number))
    return args, stages


def _exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def lint(text: str) -> list[str]:
    """Findings as ``CODE line: why``; empty when the file passes."""
    found: list[str] = []
    _, stages = parse(text)
    if not stages:
        return ["DL3061 1: no FROM"]
    names = {s.name for s in stages if s.name}
    for stage in stages:
        image, _, tag = stage.base.partition(":")
        if stage.base in names:
            pass
        elif not tag:
            found.append(f"DL3006 {stage.base}: base image without a tag")
        elif tag == "latest" or not re.match(r"^\d+\.\d+\.\d+", tag):
            found.append(f"DL3007 {stage.base}: base image not pinned to a full version")
        for ins in stage.instructions:
            where = f"{ins.line}"
            if ins.keyword == "ADD":
                kind = "a URL" if re.search(r"https?://", ins.args) else "files"
                found.append(f"DL3020 {where}: ADD of {kind}: COPY files, download in RUN")
            if ins.keyword == "COPY":
                source = re.search(r"--from=(\S+)", ins.args)
                if source and source[1] not in names and not source[1].isdigit():
                    found.append(f"DL3022 {where}: COPY --from={source[1]} names no stage")
            if ins.keyword == "RUN":
                found += _lint_run(ins, where)
            if ins.keyword in ("CMD", "ENTRYPOINT") and _exec_form(ins.args) is None:
                found.append(f"DL3025 {where}: {ins.keyword} in shell form: signals get lost")
            if ins.keyword == "MAINTAINER":
                found.append(f"DL4000 {where}: MAINTAINER is deprecated: use a label")
    final = stages[-1]
    users = [i for i in final.instructions if i.keyword == "USER"]
    if not users:
        found.append("DL3002 final stage: no USER: the image runs as root")
    elif users[-1].args.split(":")[0] in ("0", "root"):
        found.append(f"DL3002 {users[-1].line}: the last USER is root")
    for ins in final.instructions:
        if ins.keyword == "RUN" and _COMPILERS.search(ins.args):
            found.append(f"FE001 {ins.line}: build tools in the final stage")
        if ins.keyword == "RUN" and re.search(r"\bpip\b.*\binstall\b", ins.args):
            found.append(f"FE002 {ins.line}: pip install in the final stage: build it earlier")
    if not any(i.keyword == "HEALTHCHECK" for i in final.instructions):
        found.append("FE003 final stage: no HEALTHCHECK")
    labels = " ".join(i.args for i in final.instructions if i.keyword == "LABEL")
    for label in _OCI_LABELS:
        if f"org.opencontainers.image.{label}=" not in labels:
            found.append(f"FE004 final stage: no org.opencontainers.image.{label} label")
    if len(stages) < 2:
        found.append("FE005: not multi-stage: the build environment ships in the image")
    return found


def _lint_run(ins: Instruction, where: str) -> list[str]:
    found: list[str] = []
    command = ins.args
    if "apt-get" in command:
        if re.search(r"apt-get\s+(-\S+\s+)*install", command):
            if "--no-install-recommends" not in command:
                found.append(f"DL3015 {where}: apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists/*" not in command:
                found.append(f"DL3009 {where}: apt lists not removed in the same RUN")
            packages = re.findall(r"install\s+((?:\S+\s*)+)", command)
            for word in shlex.split(packages[0]) if packages else []:
                if not word.startswith("-") and "=" not in word and word not in ("&&", "\\"):
                    if re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", word):
                        found.append(f"DL3008 {where}: apt package {word} without a version")
                if word == "&&":
                    break
        if re.search(r"apt-get\s+(dist-)?upgrade", command):
            found.append(f"DL3005 {where}: apt-get upgrade in a Dockerfile")
    if re.search(r"(^|[;&|]\s*)cd\s", command):
        found.append(f"DL3003 {where}: cd in RUN: use WORKDIR")
    if re.search(r"\bsudo\b", command):
        found.append(f"DL3004 {where}: sudo in RUN")
    if re.search(r"\bpip3?\s+install\b", command) and "--no-cache-dir" not in command:
        found.append(f"DL3042 {where}: pip install keeps its cache (or set PIP_NO_CACHE_DIR)")
    if re.search(r"(?<!\|)\|(?!\|)", command):
        found.append(f"DL4006 {where}: a pipe in RUN without pipefail")
    if re.search(r"\b(curl|wget)\b[^|]*\|\s*(ba)?sh", command):
        found.append(f"FE006 {where}: a downloaded script piped to a shell")
    return found
