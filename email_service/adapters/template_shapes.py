"""A built-in email rendered once per shape, then filled in per mail.

Most of a mail's text depends only on which template it is, its language and
the few values that are not text (a code's lifetime, say). ``Shapes`` renders
a template pair once for each such shape, with a marker in place of each text
value of the context (the code, the link, the time of the registration), and
fills the markers in for every mail after: the text as it is, the HTML escaped
as Jinja's autoescape would. Rendering both templates of a pair is the larger
part of the cost of composing a mail (docs/decisions/template-shapes.md).

A shape is kept only if filling it in gives, for the mail it was made for,
exactly what rendering gives; a template that transforms a text value or
branches on its content is rendered in full each time. Which text values are
empty is part of the shape, so ``{% if link %}`` is honoured. Overrides
(``EMAIL_TEMPLATES_DIR``) never come here: an operator's template may do
anything with its values.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import escape

# Letters and digits only: nothing that autoescape, a translation's formatting or MIME would alter.
_MARKER = f"shape{secrets.token_hex(6)}n"
# Shapes are few (template x language x lifetime); past this many, a pair is rendered as before.
MAX_SHAPES = 512

Parts = tuple[str, str, str]  # subject, text body, HTML body
RenderParts = Callable[[Mapping[str, Any]], Parts]


@dataclass(frozen=True)
class _Shape:
    holes: tuple[str, ...]  # the context's text values, by key, in marker order
    parts: Parts

    def fill(self, context: Mapping[str, Any]) -> Parts:
        subject, text, html = self.parts
        for index, key in enumerate(self.holes):
            marker = f"{_MARKER}{index}x"
            value = context[key]
            subject = subject.replace(marker, value)
            text = text.replace(marker, value)
            html = html.replace(marker, str(escape(value)))
        return subject, text, html


class Shapes:
    """The shapes of the built-in templates, made as mails ask for them; safe to share between threads
    (two threads may make the same shape once each; the last one kept is as good as the first)."""

    def __init__(self, max_shapes: int = MAX_SHAPES):
        self._shapes: dict[Hashable, _Shape | None] = {}
        self._max_shapes = max_shapes

    def parts(self, template: str, context: Mapping[str, Any], render: RenderParts) -> Parts:
        """The subject, text and HTML of ``template`` for ``context`` (a ``localized`` one), as ``render`` gives
        them."""
        key = _shape_key(template, context)
        if key is None:
            return render(context)
        shape = self._shapes.get(key, _UNKNOWN)
        if shape is _UNKNOWN:
            return self._make(key, context, render)
        if shape is None:  # this template does more with its text values than print them
            return render(context)
        return shape.fill(context)

    def _make(self, key: Hashable, context: Mapping[str, Any], render: RenderParts) -> Parts:
        rendered = render(context)
        if len(self._shapes) >= self._max_shapes:
            return rendered
        # An empty text value stays empty (its emptiness is in the key); the others get a marker each.
        holes = tuple(name for name, value in context.items() if isinstance(value, str) and value and name != "locale")
        marked = {**context, **{name: f"{_MARKER}{index}x" for index, name in enumerate(holes)}}
        shape = _Shape(holes, render(marked))
        self._shapes[key] = shape if shape.fill(context) == rendered else None
        return rendered


_UNKNOWN = _Shape((), ("", "", ""))


def _shape_key(template: str, context: Mapping[str, Any]) -> Hashable | None:
    """What a shape depends on: the template, the language, every value that is not text, and which
    text values are empty. None for a context with a value that is neither (a list, say)."""
    fixed: list[tuple[str, object]] = []
    for name, value in context.items():
        if callable(value):
            continue  # the language's translation functions: the language is in the key
        if isinstance(value, str):
            fixed.append((name, value if name == "locale" else bool(value)))
        elif value is None or isinstance(value, int | float):
            fixed.append((name, value))
        else:
            return None
    return (template, tuple(sorted(fixed)))
