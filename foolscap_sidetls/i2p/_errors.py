"""
The errors of L{foolscap_sidetls.i2p}'s own layers (the i2pd launcher, an
i2pd.conf); the SAM client's are in L{foolscap_sidetls.i2p.sam}, all under
L{I2PError}.
"""

from __future__ import annotations

from .sam import I2PError

#: What a user without i2pd should do.
INSTALL_I2PD = "install the Debian/Ubuntu package 'i2pd' (apt-get install i2pd)"


class I2PDNotFound(I2PError):
    """No i2pd executable: install i2pd or pass C{executable=}."""


class I2PDFailed(I2PError):
    """A launched i2pd exited, or its SAM bridge did not answer in time."""


class I2PConfigError(I2PError, ValueError):
    """An i2pd.conf (or a C{config=} setting) that cannot be used, and why."""
