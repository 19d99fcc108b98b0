"""hats.base: the embedded default base root filesystem (an Oak-equivalent bookworm rootfs).

Public API::

    ensure_default_base(*, with_python, cache_dir=None, progress=None) -> Path
    build_base(out, *, with_python, cache_dir=None, rebuild=False, ...) -> BaseResult
"""

from hats.base.build import BaseBuildError, BaseResult, build_base, cached_base, ensure_default_base
from hats.base.cache import default_cache_dir

__all__ = [
    "BaseBuildError",
    "BaseResult",
    "build_base",
    "cached_base",
    "default_cache_dir",
    "ensure_default_base",
]
