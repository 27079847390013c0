"""Sign-in challenges in MongoDB, each under the hash of its challenge, gone when its code would be.

Spending one is a single delete: of parallel verifies of one challenge, exactly one deletes it.
"""

from __future__ import annotations

from auth_service.adapters.mongo_support import aware
from auth_service.adapters.serialized import SerializedWrites
from auth_service.domain.challenges import SignInChallenge


class MongoSignInChallenges:
    def __init__(self, database, serialize_writes: bool = False):
        self._challenges = database["sign_in_challenges"]
        self._write = SerializedWrites(serialize_writes)

    def add(self, challenge: SignInChallenge) -> None:
        self._write(
            self._challenges.insert_one,
            {
                "_id": challenge.challenge_hash,
                "user_id": challenge.user_id,
                "email": challenge.email,
                "device": challenge.device,
                "sequence": challenge.sequence,
                "expires_at": challenge.expires_at,
            },
        )

    def find(self, challenge_hash: str) -> SignInChallenge | None:
        document = self._challenges.find_one({"_id": challenge_hash})
        if document is None:
            return None
        return SignInChallenge(
            challenge_hash=document["_id"],
            user_id=document["user_id"],
            email=document["email"],
            device=document["device"],
            sequence=document["sequence"],
            expires_at=aware(document["expires_at"]),
        )

    def spend(self, challenge_hash: str) -> bool:
        """Delete the challenge; True for the one caller that did."""
        return self._write(self._challenges.delete_one, {"_id": challenge_hash}).deleted_count == 1

    def erase(self, user_id: str) -> int:
        return self._write(self._challenges.delete_many, {"user_id": user_id}).deleted_count

    def of_user(self, user_id: str) -> list[dict]:
        """The account's live challenges, as stored (the export)."""
        return list(self._challenges.find({"user_id": user_id}))
