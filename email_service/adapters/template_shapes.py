"""A built-in email rendered once per shape, then filled in per mail.

Most of a mail's text depends only on which template it is, its language and
the few values that are not text (a code's lifetime, say). ``Shapes`` renders
a template pair once for each such shape, with a marker in place of each text
value of the context (the code, the link, the time of the registration), and
fills the markers in for every mail after: the text as it is, the HTML escaped
as Jinja's autoescape would. Rendering both templates of a pair is the larger
part of the cost of composing a mail (docs/decisions/template-shapes.md).

What a template does with a value decides what its shape depends on
(``valued_names`` reads the templates' syntax trees): a value it only prints,
or only tests for emptiness, is a hole; a value it compares, filters or passes
to a function (``{% if reason == "reset" %}``) is part of the shape, whole. A
shape is kept only if filling it in gives, for the mail it was made for,
exactly what rendering gives. Overrides (``EMAIL_TEMPLATES_DIR``) never come
here: an operator's template may do anything with its values.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from markupsafe import escape

# Letters and digits only: nothing that autoescape, a translation's formatting or MIME would alter.
_MARKER = f"shape{secrets.token_hex(6)}n"
_MARKERS = re.compile(rf"{_MARKER}(\d+)x")
# Shapes are few (template x language x lifetime); past this many, a pair is rendered as before.
MAX_SHAPES = 512
# The translation calls: a value handed to one of them as a keyword is printed into the message.
_TRANSLATING = frozenset({"_", "gettext", "ngettext", "pgettext", "npgettext"})

Parts = tuple[str, str, str]  # subject, text body, HTML body
RenderParts = Callable[[Mapping[str, Any]], Parts]
# A part split at its markers: text, then a hole's index, then text, and so on.
_Pieces = tuple[str | int, ...]


def valued_names(environment: jinja2.Environment, templates: Iterable[str]) -> frozenset[str] | None:
    """The context names ``templates`` (and what they include) use otherwise than by printing them or
    testing them for emptiness; None where that cannot be read off (an include by a computed name)."""
    valued: set[str] = set()
    seen: set[str] = set()
    pending = list(templates)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        source, _, _ = environment.loader.get_source(environment, name)  # type: ignore[union-attr]
        for node, parent, grandparent in _walk(environment.parse(source)):
            if isinstance(node, nodes.Include):
                if not isinstance(node.template, nodes.Const):
                    return None
                pending.append(node.template.value)
            elif isinstance(node, nodes.Name) and node.ctx == "load" and not _printed(node, parent, grandparent):
                valued.add(node.name)
    return frozenset(valued)


def _walk(tree: nodes.Node):
    stack: list[tuple[nodes.Node, nodes.Node | None, nodes.Node | None]] = [(tree, None, None)]
    while stack:
        node, parent, grandparent = stack.pop()
        yield node, parent, grandparent
        stack.extend((child, node, parent) for child in node.iter_child_nodes())


def _printed(name: nodes.Name, parent: nodes.Node | None, grandparent: nodes.Node | None) -> bool:
    """Whether this use of a name prints its value as it is, tests it for emptiness, or calls it."""
    if isinstance(parent, nodes.Output):
        return True
    if isinstance(parent, nodes.If) and parent.test is name:
        return True
    if isinstance(parent, nodes.Call) and parent.node is name:
        return True  # a function of the context (the translation calls): not a value of the mail
    return (
        isinstance(parent, nodes.Keyword)
        and isinstance(grandparent, nodes.Call)
        and isinstance(grandparent.node, nodes.Name)
        and grandparent.node.name in _TRANSLATING
    )


@dataclass(frozen=True)
class _Shape:
    holes: tuple[str, ...]  # the context's text values, by key, in marker order
    pieces: tuple[_Pieces, _Pieces, _Pieces]  # subject, text, HTML

    @classmethod
    def of(cls, holes: tuple[str, ...], parts: Parts) -> _Shape:
        return cls(holes, tuple(_split(part) for part in parts))  # type: ignore[arg-type]

    def fill(self, context: Mapping[str, Any]) -> Parts:
        values = [context[key] for key in self.holes]
        escaped = [str(escape(value)) for value in values]
        subject, text, html = self.pieces
        # One pass over the shape: a value is never searched for markers itself.
        return _join(subject, values), _join(text, values), _join(html, escaped)


def _split(part: str) -> _Pieces:
    pieces = _MARKERS.split(part)
    # re.split alternates the text between markers and each marker's captured index.
    return tuple(int(piece) if index % 2 else piece for index, piece in enumerate(pieces))


def _join(pieces: _Pieces, values: list[str]) -> str:
    return "".join(values[piece] if isinstance(piece, int) else piece for piece in pieces)


class Shapes:
    """The shapes of the built-in templates, made as mails ask for them; safe to share between threads
    (two threads may make the same shape once each; the last one kept is as good as the first)."""

    def __init__(self, max_shapes: int = MAX_SHAPES):
        self._shapes: dict[Hashable, _Shape | None] = {}
        self._max_shapes = max_shapes

    def parts(
        self, template: str, context: Mapping[str, Any], render: RenderParts, valued: frozenset[str] | None
    ) -> Parts:
        """The subject, text and HTML of ``template`` for ``context`` (a ``localized`` one), as ``render`` gives
        them; ``valued`` names the values the template uses whole (``valued_names``), None for one that
        cannot be shaped."""
        if valued is None:
            return render(context)
        key = _shape_key(template, context, valued)
        if key is None:
            return render(context)
        shape = self._shapes.get(key, _UNKNOWN)
        if shape is _UNKNOWN:
            return self._make(key, context, render, valued)
        if shape is None:  # this template does more with its text values than its syntax shows
            return render(context)
        return shape.fill(context)

    def _make(self, key: Hashable, context: Mapping[str, Any], render: RenderParts, valued: frozenset[str]) -> Parts:
        rendered = render(context)
        if len(self._shapes) >= self._max_shapes:
            return rendered
        # An empty text value stays empty (its emptiness is in the key); the others get a marker each.
        holes = tuple(
            name
            for name, value in context.items()
            if isinstance(value, str) and value and name != "locale" and name not in valued
        )
        marked = {**context, **{name: f"{_MARKER}{index}x" for index, name in enumerate(holes)}}
        try:
            shape: _Shape | None = _Shape.of(holes, render(marked))
        except Exception:  # the mail itself rendered: a template that cannot take a marker is not shaped
            shape = None
        self._shapes[key] = shape if shape is not None and shape.fill(context) == rendered else None
        return rendered


_UNKNOWN = _Shape((), ((), (), ()))


def _shape_key(template: str, context: Mapping[str, Any], valued: frozenset[str]) -> Hashable | None:
    """What a shape depends on: the template, the language, every value that is not text and every value the
    template uses whole, by type and value, and which other text values are empty. None for a context with
    a value of another kind (a list, say)."""
    fixed: list[tuple[str, str, object]] = []
    for name, value in context.items():
        if callable(value):
            continue  # the language's translation functions: the language is in the key
        kind = type(value).__name__
        if isinstance(value, str):
            whole = name == "locale" or name in valued
            fixed.append((name, kind, value if whole else bool(value)))
        elif value is None or isinstance(value, int | float):
            fixed.append((name, kind, value))
        else:
            return None
    return (template, tuple(sorted(fixed)))
