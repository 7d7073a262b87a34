"""What a page module declares: its sections of docs/results.md and the generated blocks it writes elsewhere.

A page is data the driver reads (``SECTIONS``, ``EMBEDS``), not code the driver calls by name, so the driver needs no
edit when a family is added, and which files a section owns is explicit enough to find the files nobody owns.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Callable, NamedTuple

from ._format import Doc, Docs, anchor

#: one file's part of a section: (its name relative to benchmarks/results/, its content, every result file by name)
Renderer = Callable[[str, Doc, Docs], str]


def untitled(name: str, d: Doc) -> str | None:
    """No subtitle: a file of a several-file section is headed by its name."""
    return None


@dataclass(frozen=True)
class Section:
    """One ``## title`` of docs/results.md and the result files it owns.

    ``files`` are globs over names relative to ``benchmarks/results/`` (``seed_spread*.json``, ``reproduced/step_types.json``);
    a glob's ``*`` never crosses into a subfolder. ``order`` places the section on the page; ``first`` lists the files shown
    first, the others follow by name. ``render`` writes one file's part (``docs`` is there for parts that read a related file);
    a section of several files heads each with ``subtitle`` (or its name); ``tail`` closes the section over all its files.
    """

    key: str
    title: str
    order: int
    files: tuple[str, ...]
    render: Renderer
    subtitle: Callable[[str, Doc], str | None] = untitled
    first: tuple[str, ...] = ()
    tail: Callable[[list[tuple[str, Doc]]], str] | None = None

    def owns(self, name: str) -> bool:
        return any(fnmatchcase(name, glob) and name.count("/") == glob.count("/") for glob in self.files)

    def ordered(self, names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: (self.first.index(n) if n in self.first else len(self.first), n))

    def body(self, names: list[str], docs: Docs) -> str:
        """The section's Markdown for its files ``names`` (in order): anchor, title, then each file's part."""
        body = [anchor(self.key), f"## {self.title}"]
        for n in names:
            if len(names) > 1:
                if n.removesuffix(".json") != self.key:
                    body.append(anchor(n.removesuffix(".json")))
                body.append(f"### {self.subtitle(n, docs[n]) or n} (`{n}`)")
            body.append(self.render(n, docs[n], docs))
        closing = self.tail([(n, docs[n]) for n in names]) if self.tail else ""
        if closing:
            body.append(closing)
        return "\n\n".join(body)


class Embed(NamedTuple):
    """A generated block ``<!-- generated:KEY -->`` ... ``<!-- /generated:KEY -->`` in the hand-written ``page``, rendered
    from ``benchmarks/results/KEY.json`` by ``render`` (a tuple, so ``for page, key, render in EMBEDS`` reads it)."""

    page: Path
    key: str
    render: Callable[[Doc], str]
