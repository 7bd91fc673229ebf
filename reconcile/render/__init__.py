"""Renderers: each writes a plan or an apply report to a stream it is given."""

from reconcile.render.json import render_plan_json, render_report_json
from reconcile.render.markdown import render_apply_markdown, render_plan_markdown
from reconcile.render.origin import Origin, ci_origin
from reconcile.render.text import render_plan, render_result, render_summary, summary_line

__all__ = [
    "Origin",
    "ci_origin",
    "render_apply_markdown",
    "render_plan",
    "render_plan_json",
    "render_plan_markdown",
    "render_report_json",
    "render_result",
    "render_summary",
    "summary_line",
]
