"""What a run writes around training: the audit before it, and after it the bias audit, the
doctor's findings, the trackers' last words and the HTML report."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fitwell.errors import DataError
from fitwell.findings import at_least, findings_table

if TYPE_CHECKING:
    from fitwell.config.schema import RunConfig
    from fitwell.data.audit import AuditReport
    from fitwell.data.prepare import PreparedData
    from fitwell.track.run_dir import RunDir


def run_audit(config: RunConfig, prepared: PreparedData, run_dir: RunDir | None, console,
              say: Callable[[str], None]) -> AuditReport | None:
    """Audit the data, save ``audit.json``, show what is not merely informative, and stop when
    ``audit.fail_on`` says so.

    Raises:
        DataError: a finding at least as severe as ``audit.fail_on``.
    """
    if not config.audit.enabled:
        return None
    from fitwell.data.audit import audit

    report = audit(prepared, config)
    if run_dir is not None:
        run_dir.write_json(run_dir.audit, report.to_dict())
    counts = report.counts
    say(f"audit: {counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes"
        + (f" (details: {run_dir.audit})" if run_dir is not None else ""))
    serious = at_least(report.findings, "warning")
    if serious and console is not None:
        console.print(findings_table(serious, "data audit"))
    blocking = at_least(report.findings, config.audit.fail_on)
    if blocking:
        lines = "\n".join(f"  {f.severity}: {f.check}: {f.message}" for f in blocking)
        raise DataError(f"the data audit found {len(blocking)} finding(s) at or above audit.fail_on="
                        f"{config.audit.fail_on}:\n{lines}\nFix the data, or set audit.fail_on=none to"
                        " train anyway")
    return report
