"""Known devices and the devices the second factor trusts (ports.Devices)."""

from __future__ import annotations

from datetime import datetime

from auth_service.adapters.users.collection import UsersCollection
from auth_service.adapters.users.documents import (
    each,
)
from auth_service.domain.accounts import TrustedDevice
from auth_service.domain.devices import KNOWN_DEVICES_KEPT
from auth_service.ports import OutboxEntry

# Devices that passed the emailed second factor, newest last; an older one simply is asked again.
TRUSTED_DEVICES_KEPT = 20


class MongoDevices(UsersCollection):
    def remember_device(
        self, user_id: str, key: str, now: datetime, outbox: list[OutboxEntry], publish_after: datetime
    ) -> bool:
        """Note a login from device ``key``; True if the account had other devices but not this one
        (``outbox`` is stored then). The most recently used devices are kept."""
        seen = {"key": key, "last_seen": now}
        keep = {"$each": [seen], "$sort": {"last_seen": 1}, "$slice": -KNOWN_DEVICES_KEPT}
        first = self._locked(
            self._users.update_one,
            {"_id": user_id, "known_devices.0": {"$exists": False}},
            {"$push": {"known_devices": keep}},
        )
        if first.modified_count == 1:
            return False  # the account's first login: nothing to compare with
        new = self._locked(
            self._users.update_one,
            {"_id": user_id, "known_devices.key": {"$ne": key}},
            {
                "$push": {"known_devices": keep, "outbox": each(outbox)},
                "$set": {"outbox_due_at": publish_after},
            },
        )
        if new.modified_count == 1:
            return True
        self._locked(
            self._users.update_one,
            {"_id": user_id, "known_devices.key": key},
            {"$set": {"known_devices.$.last_seen": now}},
        )
        return False

    def trust_device(self, user_id: str, trusted: TrustedDevice) -> None:
        """Trust a device until ``trusted.until``, replacing its earlier trust; the newest few are kept."""
        self._locked(
            self._users.update_one, {"_id": user_id}, {"$pull": {"trusted_devices": {"device": trusted.device}}}
        )
        self._locked(
            self._users.update_one,
            {"_id": user_id},
            {
                "$push": {
                    "trusted_devices": {
                        "$each": [{"device": trusted.device, "until": trusted.until}],
                        "$slice": -TRUSTED_DEVICES_KEPT,
                    }
                }
            },
        )

    def forget_devices(self, user_id: str) -> None:
        """Forget every trusted device: each one passes the second factor afresh."""
        self._locked(self._users.update_one, {"_id": user_id}, {"$set": {"trusted_devices": []}})
