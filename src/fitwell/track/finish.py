"""What a run writes around training: the audit before it, and after it the bias audit, the
doctor's findings, the trackers' last words and the HTML report."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fitwell.errors import DataError
from fitwell.findings import at_least, findings_table, tally

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
    say(f"audit: {tally(counts)}"
        + (f" (details: {run_dir.audit})" if run_dir is not None else "")
        + ("; it reads the private rows: NOT covered by privacy.epsilon, do not publish it"
           if config.privacy is not None else ""))
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


def finish_run(config: RunConfig, prepared: PreparedData, trainer, state, run_dir: RunDir, summary: dict,
               predictions, trackers, console, say: Callable[[str], None], status: str = "FINISHED",
               report: bool = True) -> list:
    """After training (or its failure): the bias audit, the doctor, ``report.html``, and the
    trackers' last words (test metrics, files, the model). Returns the doctor's findings."""
    import json

    import numpy as np

    from fitwell.evaluate.doctor import dead_unit_shares, diagnose
    from fitwell.findings import count

    task = prepared.task
    classes = prepared.preprocessor.classes_ or []
    if predictions is not None and config.data.sensitive:
        from fitwell.evaluate.fairness import bias_audit

        raw = prepared.raw if prepared.raw is not None else prepared.frame
        rows = prepared.frame.index[prepared.split.test]
        table, warnings = bias_audit(predictions, raw.loc[rows, config.data.sensitive], task, classes,
                                     config.audit.min_group_size)
        table["findings"] = [f.to_dict() for f in warnings]
        run_dir.write_json(run_dir.fairness, table)
        for name, column in table["columns"].items():
            gaps = ", ".join(f"{k} {v:.3f}" for k, v in column["differences"].items() if v is not None)
            say(f"bias audit {name!r}: {len(column['groups'])} groups" + (f"; {gaps}" if gaps else ""))
        if warnings and console is not None:
            console.print(findings_table(warnings, "bias audit"))
    audit = json.loads(run_dir.audit.read_text()) if run_dir.audit.exists() else None
    counts = None
    if task != "regression":
        counts = np.bincount(prepared.train.target.numpy().astype(np.int64), minlength=len(classes)).tolist()
    activations = dead_unit_shares(trainer.eval_module, prepared.train.numeric, prepared.train.codes,
                                   inputs=prepared.train.inputs)
    use_baseline = task != "regression" or config.train.loss in ("auto", "mse")
    findings = diagnose(state.history, config, task=task, diverged=state.diverged,
                        stop_reason=state.stop_reason, best_epoch=state.best_epoch,
                        class_counts=counts if use_baseline else None, activations=activations,
                        audit=audit, predictions=predictions, classes=classes)
    if task == "regression" and not use_baseline:
        findings = [f for f in findings if f.check != "underfitting"]
    run_dir.write_json(run_dir.doctor, {"findings": [f.to_dict() for f in findings],
                                        "counts": count(findings), "activations": activations})
    if findings and console is not None:
        console.print(findings_table(findings, "training doctor"))
    elif not findings:
        say("doctor: no problems found in the curves and statistics")
    if config.track.report and report:
        from fitwell.track.report import write_report

        say(f"report: {write_report(run_dir.path)}")
    for tracker in trackers:
        tracker.finish(summary, status)
    return findings
