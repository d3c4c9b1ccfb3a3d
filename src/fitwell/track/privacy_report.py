"""The report's Privacy section: the budget a private run spent, on what, and what it leaks when
attacked (``fitwell privacy-audit``)."""

from __future__ import annotations

import html

PRIVATE_PAGE = ("<p class=warning>A private run: the model is covered by its privacy budget (see Privacy);"
                " this page is not -- its test metrics, plots, curves and audit are computed from private"
                " rows without noise. Keep it in-house.</p>")
PRIVATE_ROWS = ("<p class=warning>This audit reads the private rows: it is not covered by the run's"
                " privacy budget. Do not publish it with the model.</p>")


def privacy_html(privacy: dict | None, attack: dict | None, table) -> str:
    """HTML of the section; ``table`` renders a list of dicts (the report's ``html_table``)."""
    if not privacy and not attack:
        return "<p class=missing>not a private run (no privacy section in its config)</p>"
    parts = []
    if privacy:
        pre = privacy.get("preprocessing") or {}
        parts.append(
            f"<p><b>({privacy['epsilon']:g}, {privacy['delta']:.0e})-differentially private</b> by"
            f" {html.escape(privacy['accountant'])} accounting of {privacy['mechanism']}:"
            f" preprocessing {pre.get('epsilon', 0):g}, training {privacy['training_epsilon']:g}"
            f" (sequential composition) of a budget of {privacy['target_epsilon']:g}.</p>")
        parts.append(table([{"": k, "value": privacy[k]} for k in (
            "noise_multiplier", "sample_rate", "expected_batch_size", "steps", "max_grad_norm", "clipping",
            "training_delta") if k in privacy]))
        if pre.get("releases"):
            parts.append(f"<p>The preprocessing released {pre['releases']} statistics from the private rows"
                         f" ({html.escape(pre['mechanism'])}), epsilon {pre['epsilon_each']:.3g} each.</p>")
        lines = "".join(f"<li>{html.escape(line)}</li>" for line in privacy.get("not_covered", []))
        parts.append(f"<p class=warning>Not covered by the guarantee:</p><ul>{lines}</ul>")
    if attack:
        parts.append("<h3>Privacy audit (membership inference)</h3>" + table([
            {"attack": name, **{k: v for k, v in row.items() if k != "curve"}}
            for name, row in attack["attacks"].items()]))
        parts.append(f"<p>Empirical lower bound on epsilon: <b>{attack['epsilon_lower_bound']:.3g}</b>"
                     f" (95% confidence, {attack['members']} training rows against {attack['non_members']}"
                     " held-out rows).</p>")
    return "".join(parts)


def with_privacy(body: dict, privacy: dict | None, attack: dict | None, table) -> dict:
    """The report's sections with Privacy before the last two (audit, config), for a private run
    or one that was attacked; ``body`` unchanged otherwise."""
    if not privacy and not attack:
        return body
    items = list(body.items())
    section = ("Privacy", privacy_html(privacy, attack, table))
    return {**dict(items[:-2]), "privacy": section, **dict(items[-2:])}
