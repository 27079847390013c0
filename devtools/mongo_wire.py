"""A MongoDB wire-protocol front for one mongomock store, so that several auth processes share one
database on a machine that has no MongoDB server.

It answers the handshake and the commands pymongo sends for what auth does (find, insert, update,
delete, findAndModify, createIndexes, aggregate), one command at a time under one lock. It is a
stand-in for the tests, not a database: no replication, no sessions (so pymongo does not retry
writes against it), no cursors beyond the first batch.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from datetime import UTC, datetime
from typing import Any

import bson
import mongomock
import pymongo
from bson.codec_options import CodecOptions

from devtools.tcp import ThreadedTcpServer

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
HEADER = struct.Struct("<iiii")
CODEC: CodecOptions = CodecOptions(tz_aware=False)
HELLO = {
    "ismaster": True,
    "isWritablePrimary": True,
    "helloOk": True,
    "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48_000_000,
    "maxWriteBatchSize": 100_000,
    "minWireVersion": 0,
    "maxWireVersion": 17,
    "readOnly": False,
}


class MongoWireServer(ThreadedTcpServer):
    def __init__(self, port: int):
        super().__init__(port, "mongo-wire")
        self._client: mongomock.MongoClient = mongomock.MongoClient()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def serve(self, connection: socket.socket) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                header = _read(connection, HEADER.size)
                length, request_id, _, opcode = HEADER.unpack(header)
                body = _read(connection, length - HEADER.size)
                if opcode == OP_QUERY:
                    connection.sendall(self._answer_query(request_id, body))
                elif opcode == OP_MSG:
                    connection.sendall(self._answer_msg(request_id, body))
                else:
                    return

    def _answer_query(self, request_id: int, body: bytes) -> bytes:
        # Only the legacy handshake comes as OP_QUERY: flags, collection, skip, return, query.
        end = body.index(b"\x00", 4)
        query_start = end + 1 + 8
        size = struct.unpack_from("<i", body, query_start)[0]
        command = bson.decode(body[query_start : query_start + size], CODEC)
        document = bson.encode(self._run(command))
        reply = struct.pack("<iqii", 0, 0, 0, 1) + document
        return HEADER.pack(HEADER.size + len(reply), 0, request_id, OP_REPLY) + reply

    def _answer_msg(self, request_id: int, body: bytes) -> bytes:
        flags = struct.unpack_from("<I", body)[0]
        end = len(body) - (4 if flags & 1 else 0)
        position = 4
        command: dict[str, Any] = {}
        sequences: dict[str, list] = {}
        while position < end:
            kind = body[position]
            position += 1
            size = struct.unpack_from("<i", body, position)[0]
            if kind == 0:
                command = bson.decode(body[position : position + size], CODEC)
            else:
                name_end = body.index(b"\x00", position + 4)
                name = body[position + 4 : name_end].decode()
                sequences[name] = list(bson.decode_all(body[name_end + 1 : position + size], CODEC))
            position += size
        command.update(sequences)
        document = bson.encode(self._run(command))
        reply = struct.pack("<IB", 0, 0) + document
        return HEADER.pack(HEADER.size + len(reply), 0, request_id, OP_MSG) + reply

    def _run(self, command: dict[str, Any]) -> dict[str, Any]:
        name = next(iter(command))
        try:
            with self._lock:
                answer = self._command(name.lower(), command)
        except mongomock.OperationFailure as error:
            return {"ok": 0.0, "errmsg": str(error), "code": error.code or 8000}
        return {**answer, "ok": 1.0}

    def _command(self, name: str, command: dict[str, Any]) -> dict[str, Any]:
        if name in ("hello", "ismaster"):
            return {**HELLO, "localTime": datetime.now(UTC)}
        if name in ("ping", "endsessions", "killcursors", "buildinfo", "getlasterror"):
            return {"version": "6.0.0"} if name == "buildinfo" else {}
        database = self._client[command.get("$db", "admin")]
        collection = database[command[next(iter(command))]]
        namespace = f"{database.name}.{collection.name}"
        if name == "find":
            documents = list(
                collection.find(
                    command.get("filter", {}),
                    projection=command.get("projection"),
                    sort=list(command["sort"].items()) if command.get("sort") else None,
                    skip=command.get("skip", 0),
                    limit=abs(command.get("limit", 0)),
                )
            )
            return {"cursor": {"id": bson.Int64(0), "ns": namespace, "firstBatch": documents}}
        if name == "aggregate":
            documents = list(collection.aggregate(command["pipeline"]))
            return {"cursor": {"id": bson.Int64(0), "ns": namespace, "firstBatch": documents}}
        if name == "insert":
            return _writes(command["documents"], lambda document: (collection.insert_one(document), 1)[1])
        if name == "update":
            return _updates(collection, command["updates"])
        if name == "delete":
            return _writes(
                command["deletes"],
                lambda delete: (
                    (
                        collection.delete_one(delete["q"])
                        if delete.get("limit") == 1
                        else collection.delete_many(delete["q"])
                    ).deleted_count
                ),
            )
        if name == "findandmodify":
            return _find_and_modify(collection, command)
        if name == "createindexes":
            for index in command["indexes"]:
                options = {key: value for key, value in index.items() if key not in ("key", "v")}
                collection.create_index(list(index["key"].items()), **options)
            return {"createdCollectionAutomatically": False}
        raise mongomock.OperationFailure(f"no such command: {name}", code=59)


def _read(connection: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = connection.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("closed")
        chunks += chunk
    return bytes(chunks)


def _delete(collection, delete: dict[str, Any]) -> int:
    query = delete["q"]
    result = collection.delete_one(query) if delete.get("limit") == 1 else collection.delete_many(query)
    return result.deleted_count


def _writes(items: list, write) -> dict[str, Any]:
    done, errors = 0, []
    for index, item in enumerate(items):
        try:
            done += write(item)
        except mongomock.DuplicateKeyError as error:
            errors.append({"index": index, "code": 11000, "errmsg": str(error)})
            break
    return {"n": done, **({"writeErrors": errors} if errors else {})}


def _updates(collection, updates: list) -> dict[str, Any]:
    matched, modified, upserted, errors = 0, 0, [], []
    for index, update in enumerate(updates):
        query, change = update["q"], update["u"]
        options = {"upsert": update.get("upsert", False)}
        if update.get("arrayFilters"):
            options["array_filters"] = update["arrayFilters"]
        try:
            if isinstance(change, dict) and not any(key.startswith("$") for key in change):
                result = collection.replace_one(query, change, upsert=options["upsert"])
            elif update.get("multi"):
                result = collection.update_many(query, change, **options)
            else:
                result = collection.update_one(query, change, **options)
        except mongomock.DuplicateKeyError as error:
            errors.append({"index": index, "code": 11000, "errmsg": str(error)})
            break
        matched += result.matched_count
        modified += result.modified_count
        if result.upserted_id is not None:
            upserted.append({"index": index, "_id": result.upserted_id})
    answer: dict[str, Any] = {"n": matched + len(upserted), "nModified": modified}
    if upserted:
        answer["upserted"] = upserted
    if errors:
        answer["writeErrors"] = errors
    return answer


def _find_and_modify(collection, command: dict[str, Any]) -> dict[str, Any]:
    query = command.get("query", {})
    options: dict[str, Any] = {"projection": command.get("fields")}
    if command.get("sort"):
        options["sort"] = list(command["sort"].items())
    if command.get("remove"):
        value = collection.find_one_and_delete(query, **options)
    else:
        change = command["update"]
        after = pymongo.ReturnDocument.AFTER if command.get("new") else pymongo.ReturnDocument.BEFORE
        options.update(upsert=command.get("upsert", False), return_document=after)
        try:
            if isinstance(change, dict) and not any(key.startswith("$") for key in change):
                value = collection.find_one_and_replace(query, change, **options)
            else:
                if command.get("arrayFilters"):
                    options["array_filters"] = command["arrayFilters"]
                value = collection.find_one_and_update(query, change, **options)
        except mongomock.DuplicateKeyError as error:
            raise mongomock.OperationFailure(str(error), code=11000) from None
    return {"lastErrorObject": {"n": int(value is not None), "updatedExisting": value is not None}, "value": value}
