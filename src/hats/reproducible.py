"""The one timestamp every reproducible output of this project uses.

:data:`EPOCH` is 2000-01-01T00:00:00Z (946684800): rules_pkg's "portable"
mtime (the reference's image layers), Oak's ``tar --mtime='2000-01-01Z'`` for
its base, and the ``SOURCE_DATE_EPOCH`` the base build gives mmdebstrap. Every
tar, cpio or tree this project writes for the image, the initramfs, the base
or a bundle stamps its entries with it, so their bytes never depend on a clock.
"""

from __future__ import annotations

#: 2000-01-01T00:00:00Z in seconds since the Unix epoch.
EPOCH = 946684800
