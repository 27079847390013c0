"""Signing keys kept in MongoDB: one document per key, its private part sealed (AES-GCM under a key
derived from JWT_SECRET), its public JWK and schedule in clear.

A rotation is one insert: the next key takes the next ``generation``, which a unique index holds
to one key, so of several replicas that find a rotation due at once exactly one adds a key and the
others read it.
"""

from __future__ import annotations

import pymongo
import pymongo.errors

from auth_service.adapters.mongo_support import aware
from auth_service.adapters.serialized import SerializedWrites
from auth_service.domain.sealed_keys import KeySealer
from auth_service.domain.signing_keys import KeyRecord, SigningKey, key_from_jwk

COLLECTION = "signing_keys"


class MongoSigningKeys:
    def __init__(self, database, sealer: KeySealer, serialize_writes: bool = False):
        self._keys = database[COLLECTION]
        self._sealer = sealer
        self._locked = SerializedWrites(serialize_writes)
        # Opening a key costs an AES-GCM decryption and a key parse: done once per kid and process.
        self._opened: dict[str, SigningKey] = {}

    def records(self) -> list[KeyRecord]:
        """Every stored key, oldest first; ``UnsealError`` if one does not open with this JWT_SECRET."""
        records = []
        for document in self._keys.find({}).sort("generation", pymongo.ASCENDING):
            records.append(
                KeyRecord(
                    key=self._open(document),
                    generation=document["generation"],
                    published_at=aware(document["published_at"]),
                    signs_from=aware(document["signs_from"]),
                )
            )
        return records

    def add(self, record: KeyRecord) -> bool:
        """Store the key; False if another process stored a key of this generation first."""
        key = record.key
        document = {
            "_id": key.kid,
            "generation": record.generation,
            "alg": key.alg,
            "public_jwk": key.public_jwk,
            "sealed_private_jwk": self._sealer.seal(key.kid, key.private_jwk),
            "published_at": record.published_at,
            "signs_from": record.signs_from,
        }
        try:
            self._locked(self._keys.insert_one, document)
        except pymongo.errors.DuplicateKeyError:
            return False
        self._opened[key.kid] = key
        return True

    def remove(self, kid: str) -> bool:
        result = self._locked(self._keys.delete_one, {"_id": kid})
        self._opened.pop(kid, None)
        return result.deleted_count == 1

    def _open(self, document: dict) -> SigningKey:
        kid = document["_id"]
        opened = self._opened.get(kid)
        if opened is None:
            opened = key_from_jwk(self._sealer.open(kid, document["sealed_private_jwk"]))
            self._opened[kid] = opened
        return opened
