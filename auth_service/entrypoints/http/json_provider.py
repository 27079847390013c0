"""Flask's JSON, with one more way for a body to be malformed."""

from __future__ import annotations

from flask.json.provider import DefaultJSONProvider


class BoundedJSONProvider(DefaultJSONProvider):
    def loads(self, s, **kwargs):
        # A body nested thousands of levels deep makes the parser raise
        # RecursionError, which Flask does not treat as a parse error; make it
        # one, so the client gets 400 bad_request instead of a 500.
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
