"""Findings: what the data audit and the training doctor report, each with a severity, the
evidence and the config change that fixes it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "error")
STYLE = {"info": "cyan", "warning": "yellow", "error": "bold red"}


@dataclass
class Finding:
    """One thing worth knowing.

    Args:
        check: the check that found it (``duplicates_across_splits``, ``overfitting``...).
        severity: info, warning or error.
        message: what was found, with the numbers.
        column: the column it is about, if any.
        evidence: the values behind the message (epochs, shares, scores).
        fix: the concrete change that addresses it (a config key=value where there is one).

    Example:
        >>> Finding("constant_column", "warning", "column 'c' has one value", column="c").severity
        'warning'
    """

    check: str
    severity: Severity
    message: str
    column: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_least(findings: Iterable[Finding | dict], severity: str) -> list:
    """The findings at least as severe as ``severity`` (``none`` gives none)."""
    if severity == "none":
        return []
    floor = SEVERITIES.index(severity)
    return [f for f in findings if SEVERITIES.index(_get(f, "severity")) >= floor]


def count(findings: Iterable[Finding | dict]) -> dict[str, int]:
    counts = dict.fromkeys(SEVERITIES, 0)
    for finding in findings:
        counts[_get(finding, "severity")] += 1
    return counts


def tally(counts: dict[str, int]) -> str:
    """``count``'s numbers in words.

    Example:
        >>> tally({"error": 0, "warning": 1, "info": 2})
        '0 errors, 1 warning, 2 notes'
    """
    words = {"error": "error", "warning": "warning", "info": "note"}
    return ", ".join(f"{counts.get(k, 0)} {word}{'' if counts.get(k, 0) == 1 else 's'}"
                     for k, word in words.items())


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first; stable within a severity."""
    return sorted(findings, key=lambda f: -SEVERITIES.index(f.severity))


def findings_table(findings: Iterable[Finding | dict], title: str):
    """A Rich table: severity, check, column, message and fix."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    for name in ("severity", "check", "column", "finding", "fix"):
        table.add_column(name, overflow="fold")
    for finding in findings:
        severity = _get(finding, "severity")
        table.add_row(f"[{STYLE[severity]}]{severity}[/]", _get(finding, "check"),
                      _get(finding, "column") or "", _get(finding, "message"), _get(finding, "fix") or "")
    return table


def _get(finding: Finding | dict, key: str):
    return finding[key] if isinstance(finding, dict) else getattr(finding, key)
