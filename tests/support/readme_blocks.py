"""The README's samples: its fenced code blocks by section heading, each command of a
shell block on its own, the command and output of a console block, and how a sample
line of output is matched against what a command really printed."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGUAGES = frozenset({"sh", "bash", "shell"})
_FENCE = re.compile(r"^(\s{0,3})(```+)\s*([\w+-]*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPTIONAL = re.compile(r"(?<!\S)\[(-[^\[\]]*)\]")


@dataclass(frozen=True)
class Block:
    """One fenced block: the heading above it, its language, its text and its line."""

    section: str  # the nearest heading above, without its `#`s
    language: str  # the fence's info string ("sh", "python", "console", "" for none)
    text: str  # the lines between the fences, each ending in a newline
    line: int  # the line number of the opening fence, from 1


@dataclass(frozen=True)
class Sample:
    """One thing the README shows: a command of a shell block, or a whole other block."""

    block: Block
    text: str  # the command (continuation lines kept, trailing comment dropped) or the block
    line: int  # the line it starts on

    @property
    def section(self) -> str:
        return self.block.section

    @property
    def first_line(self) -> str:
        return self.text.strip().split("\n", 1)[0]

    def where(self) -> str:
        return f"README.md:{self.line}, section {self.section!r}: {self.first_line!r}"


@dataclass(frozen=True)
class Key:
    """Names samples by their section and the start of their first line."""

    section: str
    starts: str

    def matches(self, sample: Sample) -> bool:
        return sample.section == self.section and sample.first_line.startswith(self.starts)


def blocks(markdown: str) -> list[Block]:
    """Every fenced block of `markdown`, in order."""
    found: list[Block] = []
    section, opened, body = "", None, list[str]()
    for number, line in enumerate(markdown.splitlines(), start=1):
        if opened is None:
            fence = _FENCE.match(line)
            heading = _HEADING.match(line)
            if fence:
                opened, body = (number, len(fence.group(1)), fence.group(2), fence.group(3)), []
            elif heading:
                section = heading.group(2)
            continue
        start, indent, ticks, language = opened
        if line.strip() == ticks:
            found.append(Block(section, language.lower(), "".join(body), start))
            opened = None
        else:
            blanks = len(line) - len(line.lstrip(" "))
            body.append(line[min(indent, blanks) :] + "\n")  # the fence's indent removed
    if opened is not None:
        raise ValueError(f"README.md:{opened[0]}: a fenced block is never closed")
    return found


def shell_commands(block: Block) -> list[tuple[int, str]]:
    """The commands of a shell block with their line numbers: `\\` continuations kept,
    trailing `# comments` and comment-only lines dropped."""
    commands: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            start = block.line + 1 + offset
        code = strip_comment(line)
        if code.endswith("\\"):
            pending.append(code)
            continue
        pending.append(code)
        commands.append((start, "\n".join(pending)))
        pending = []
    if pending:
        raise ValueError(f"README.md:{start}: a command ends in a line continuation")
    return commands


def strip_comment(line: str) -> str:
    """`line` without a trailing shell comment (a `#` after a blank, outside quotes)."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip()
    return line.rstrip()


def samples(markdown: str) -> list[Sample]:
    """Every command of every shell block, and every other block whole."""
    found: list[Sample] = []
    for block in blocks(markdown):
        if block.language in SHELL_LANGUAGES:
            found += [Sample(block, text, line) for line, text in shell_commands(block)]
        else:
            found.append(Sample(block, block.text, block.line + 1))
    return found


def read_samples(readme: Path) -> list[Sample]:
    return samples(readme.read_text(encoding="utf-8"))


def split_command(command: str) -> tuple[dict[str, str], list[str]]:
    """A simple command's leading `NAME=value` assignments and its argv."""
    words = shlex.split(command.replace("\\\n", " "))
    env: dict[str, str] = {}
    while words and _ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def variants(command: str) -> list[str]:
    """A command with optional `[--flag ...]` groups (alternatives split by `|`): without
    any, with each alternative alone, and (for several groups) with every first one."""
    groups = [[choice.strip() for choice in match.group(1).split("|")]
              for match in _OPTIONAL.finditer(command)]  # fmt: skip

    def filled(choices: list[str]) -> str:
        parts = iter(choices)
        return re.sub(r" {2,}", " ", _OPTIONAL.sub(lambda _: next(parts), command)).strip()

    if not groups:
        return [command]
    found = [filled([""] * len(groups))]
    for index, choices in enumerate(groups):
        for choice in choices:
            found.append(filled([choice if i == index else "" for i in range(len(groups))]))
    if len(groups) > 1:
        found.append(filled([choices[0] for choices in groups]))
    return found


def console_sample(block: Block) -> tuple[str, list[str]]:
    """A console block's one `$ ` command (continuations kept) and the output it shows."""
    lines = block.text.splitlines()
    if not lines or not lines[0].startswith("$ "):
        raise ValueError(f"README.md:{block.line}: a console block starts with `$ command`")
    command = [lines[0][2:]]
    rest = lines[1:]
    while command[-1].endswith("\\") and rest:
        command.append(rest.pop(0))
    if any(line.startswith("$ ") for line in rest):
        raise ValueError(f"README.md:{block.line}: one command per console block")
    return "\n".join(command), rest


def output_pattern(shown: str) -> re.Pattern[str]:
    """A line of output as the README shows it, as a pattern: literal, except that a word
    ending in `...` (an elided value, such as a token) matches any non-blank run."""
    parts = re.split(r"(\S*\.\.\.)", shown)
    return re.compile("".join(r"\S+" if p.endswith("...") else re.escape(p) for p in parts))


def output_mismatch(shown: list[str], printed: list[str]) -> str | None:
    """How `printed` differs from the `shown` lines (`...` words elided), or None."""
    for number, (want, got) in enumerate(zip(shown, printed, strict=False), start=1):
        if not output_pattern(want).fullmatch(got):
            return f"output line {number}: the README shows\n  {want}\nthe command printed\n  {got}"
    if len(printed) != len(shown):
        return f"the README shows {len(shown)} lines of output, the command printed {printed}"
    return None
