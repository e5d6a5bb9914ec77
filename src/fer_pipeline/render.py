"""Report templates (Jinja2, ``fer_pipeline/templates/``): the model cards, the validation page and the
experiments page."""

from __future__ import annotations

from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"


def pct(v) -> str:
    """0.6701 -> '67.0%'; None -> '-'."""
    return "-" if v is None else f"{100 * v:.1f}%"


def render(name: str, filters: dict | None = None, **context) -> str:
    """Render ``templates/<name>``; HTML templates are autoescaped, Markdown ones are not. ``pct``
    and ``filters`` are the templates' filters."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]), keep_trailing_newline=True)
    env.filters.update({"pct": pct, **(filters or {})})
    return env.get_template(name).render(**context)
