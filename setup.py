"""The one compiled part of kws: the firmware's C micro front end (firmware/micro_frontend.c, the
source the board runs) built as a shared library for training on CPUs, loaded with ctypes by
kws/audio/micro_frontend_c.py. Built at install time (pip install -e . / make install); optional:
without a C compiler kws still installs and falls back to the bit-exact PyTorch front end."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "kws.audio._micro_frontend_lib",
            sources=["firmware/micro_frontend.c", "firmware/host/micro_frontend_info.c"],
            # the tables of the default front end (tests check them against the Python's)
            include_dirs=["firmware/default_tables", "firmware"],
            # -O3 vectorizes the batch code across clips; no -march: the library may run on other
            # machines of a cluster (the batch kernel picks AVX2/AVX-512 at load time itself).
            extra_compile_args=["-std=c99", "-O3"],
            optional=True,
        )
    ]
)
