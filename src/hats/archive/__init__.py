"""hats.archive: tar and xz as a library, importing nothing of ``hats`` but the leaves.

- :mod:`~hats.archive.tarformat`: GNU tar header bytes and their decoding (pure);
- :mod:`~hats.archive.tarstream`: the streaming ``TarReader`` and ``TarWriter``;
- :mod:`~hats.archive.compress`: format detection by content, threaded
  decompression, ``XzSink`` (the reference's single-stream ``xz -T1``);
- :mod:`~hats.archive.xzformat`: the ``.xz`` container (pure);
- :mod:`~hats.archive.xzparallel`: the parallel multi-block encoder;
- :mod:`~hats.archive.blockcache`: encoded xz blocks cached on disk.

The builder (:mod:`hats.image`), the base (:mod:`hats.base`), the guest's
stage1, the orchestrator's bundle reader and the VM tools all use it; it
imports nothing else of ours, so none of them form a cycle through it.
"""
