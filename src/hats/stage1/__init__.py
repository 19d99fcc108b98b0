"""hats.stage1: a Python Oak stage1 (the guest's /init), stdlib and this package only.

- :mod:`~hats.stage1.unpack`: unpack the system image with tar-rs 0.4.40's
  ``Archive::unpack`` rules, as stage1 does (paths resolved inside the root by
  :mod:`~hats.stage1.rootpath`, as after its chroot);
- :mod:`~hats.stage1.finish`: the steps after unpacking (``/etc/machine-id``,
  ``/oak``, ``/oak/dice``, ``/.dockerenv``);
- :mod:`~hats.stage1.cmdline`: stage1's arguments, ``LAUNCHER_ADDR`` and
  ``/proc/cmdline``;
- :mod:`~hats.stage1.guest`: the program itself (``python -m hats.stage1``).
"""
