"""A schema's deep copy is the schema itself: the API's documents are what real copies would make them.

flask-smorest deep-copies each view's documentation, schemas included, at every decorator; the API's
``Schema`` base answers a deep copy with itself, to keep those copies out of memory. Building the
documents both ways, each in a fresh interpreter (the decorators run at import), must give the same
bytes: if flask-smorest or apispec ever changed a schema while documenting it, sharing would show here.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import marshmallow as ma

from auth_service.entrypoints.http import schemas
from auth_service.entrypoints.http.admin import schemas as admin_schemas

ROOT = Path(__file__).resolve().parents[2]

DOCUMENTS = """
import sys
from auth_service.entrypoints.http import schemas
if sys.argv[1] == "real-copies":
    del schemas.Schema.__deepcopy__
from tests.unit.conftest import build_system
system = build_system()
public = system.auth.app.test_client().get("/openapi.json")
admin = system.auth.admin_app.test_client().get("/admin/openapi.json")
assert public.status_code == admin.status_code == 200
sys.stdout.buffer.write(public.data + b"\\n---\\n" + admin.data)
"""


def documents(mode: str) -> bytes:
    done = subprocess.run(
        [sys.executable, "-c", DOCUMENTS, mode], cwd=ROOT, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    return done.stdout


def test_the_documents_are_the_same_with_real_copies_of_the_schemas():
    shared, copied = documents("shared"), documents("real-copies")
    assert b'"/auth/register"' in shared and b'"/admin/users"' in shared.split(b"\n---\n")[1]
    assert shared == copied


def test_every_schema_of_the_api_is_its_own_copy():
    import auth_service.bootstrap  # noqa: F401  (imports every module with a schema: both apps' routes)

    def descendants(cls: type) -> list[type]:
        found = [cls]
        subclasses: list[type] = type.__subclasses__(cls)
        for sub in subclasses:
            found += descendants(sub)
        return found

    ours = [cls for cls in descendants(ma.Schema) if cls.__module__.startswith("auth_service.")]
    assert len(ours) > 40 and admin_schemas.UserSummary in ours and schemas.RegisterRequest in ours
    assert [cls.__qualname__ for cls in ours if not issubclass(cls, schemas.Schema)] == []
    for schema in (schemas.RegisterRequest(), admin_schemas.UserSummary(), schemas.StrictSchema()):
        assert copy.deepcopy(schema) is schema
        assert copy.deepcopy({"schema": schema})["schema"] is schema
