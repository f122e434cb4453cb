"""
The tahoe.cfg keys foolscap-sidetls reads that Tahoe-LAFS does not know.

Tahoe refuses a tahoe.cfg with a key it does not know; under the launcher
these keys, and only these, are admitted as well, so a typo is still
refused with Tahoe's own message.
"""

from __future__ import annotations

from typing import Mapping

__all__ = ["ADDED_KEYS"]

#: Per section, the keys the launcher adds to what Tahoe-LAFS accepts.
#: Tahoe already accepts (and the launcher now serves) [i2p] launch,
#: i2p.configdir and i2p.executable, which Tahoe itself cannot use.
ADDED_KEYS: Mapping[str, tuple[str, ...]] = {
    # I2CP options for the dialing and listening SAM sessions (Tahoe ticket 2889);
    # how long a launched i2pd may go without peers before dials fail saying why.
    "i2p": ("i2cp.options", "reseed.timeout"),
    # How long tor may go without bootstrap progress before dials fail saying why.
    "tor": ("bootstrap.timeout",),
}


def is_added(section: str, key: str) -> bool:
    return key in ADDED_KEYS.get(section, ())
