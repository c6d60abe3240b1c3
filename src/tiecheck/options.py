"""What a caller asks of a run: the choices shared by the command line, configuration files and
the library API, defined once.

``Expect``, ``FailOn`` and ``Keep`` are the vocabulary; ``Options`` carries every setting of an
``inspect`` run (``tiecheck.check(sources, options)``). The CLI only fills an ``Options``; a
configuration file fills ``Layer``s (``tiecheck.config``) that are merged per source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from pathlib import Path

from tiecheck.rules import Code, Severity


class ExitCode(IntEnum):
    """0: nothing at or above ``fail-on``; 1: findings at or above it; 2: the check itself
    could not run (a source that cannot be opened, a bad command line or configuration)."""

    OK = 0
    FINDINGS = 1
    ERROR = 2


class Expect(str, Enum):
    """The tie state a checkpoint must have (``--expect``; TC112 otherwise)."""

    TIED = "tied"
    UNTIED = "untied"


class FailOn(str, Enum):
    """The lowest severity that fails a source (``--fail-on``)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    NEVER = "never"

    @property
    def severity(self) -> Severity | None:
        """The threshold as a severity; None for ``never``."""
        return None if self is FailOn.NEVER else Severity(self.value)


class Keep(str, Enum):
    """Whose values survive when ``fix --to tied`` merges copies that differ."""

    EMBEDDING = "embedding"
    HEAD = "head"


def parse_pair(text: str) -> tuple[str, str]:
    """``EMBEDDING=HEAD`` (``--pair``) as two tensor names; tensor names may hold ``=`` but
    never end in one, so the split is at the last ``=`` that leaves two non-empty names."""
    embedding, sep, head = text.rpartition("=")
    if not sep or not embedding or not head:
        raise ValueError(f"{text!r} is not EMBEDDING=HEAD (two tensor names joined by '=')")
    if embedding == head:
        raise ValueError(f"{text!r} names the same tensor twice")
    return embedding, head


@dataclass(frozen=True)
class Options:
    """Every setting of one ``check`` run; ``Options()`` is the defaults.

    Rule settings given here (``expect``, ``fail_on``, ``select``, ``ignore``) are the command
    line's layer: they win over the configuration file, source by source.
    """

    expect: Expect | None = None
    """the tie state every source must have; None leaves it to the configuration."""
    fail_on: FailOn | None = None
    """None leaves it to the configuration (default ``error``)."""
    select: frozenset[Code] | None = None
    """report only these rules (replaces the configured selection); None: no change."""
    ignore: frozenset[Code] = frozenset()
    """rules not to report (added to the configured ignores)."""
    exit_zero: bool = False
    """exit 0 even when findings reach ``fail_on`` (a 2 is never hidden)."""
    no_data: bool = False
    """work from headers alone: no tensor byte is read."""
    base: Path | None = None
    """a PEFT adapter's base model folder or config.json."""
    config: Path | None = None
    """this configuration file instead of the nearest one found upward."""
    isolated: bool = False
    """ignore configuration files altogether (as ruff's ``--isolated``)."""
    revision: str | None = None
    """Hub sources: branch, tag or commit."""
    token: str | None = None
    """Hub sources: access token (default: the library's, from HF_TOKEN or the login)."""
    download: bool = False
    """Hub sources with only pickles: download them into the cache to inspect them."""
    rtol: float = 1e-5
    """values within ``atol + rtol * |embedding|`` count as numerically identical."""
    atol: float = 1e-8
    timeout: float | None = None
    """Hub sources: seconds a request may go unanswered (default: TIECHECK_HUB_TIMEOUT, 30)."""
    offline: bool = False
    """Hub sources: the Hugging Face cache only, no network request."""
    pair: tuple[str, str] | None = None
    """``(embedding, head)``: the tie group, named by the user (``--pair``) where nothing in
    the files confirms the one the names suggest; it replaces every other grouping."""
