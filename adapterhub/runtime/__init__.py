"""The adapter runtime: :class:`AdapterModel` and helpers for method plugins.

Nothing here imports torch at import time; ``adapterhub.runtime.model`` does, lazily reached through
``adapterhub.AdapterModel``.
"""

import logging as _logging


class _OptionalBf16KernelNotice(_logging.Filter):
    """Drop bitsandbytes' notice that its optional AVX512-BF16 CPU kernel could not be fetched.

    bitsandbytes logs it at import on CPUs with AVX512-BF16 when the ``kernels`` package (which would
    download the kernel from a Hub) is absent. adapterhub never uses that kernel: it keeps every 4-bit
    layer on the portable fp32 path (``quantize.disable_cpu_bf16_kernel``), whose results do not depend
    on the machine. Every other bitsandbytes message still shows.
    """

    def filter(self, record: _logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_OptionalBf16KernelNotice())
