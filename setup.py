"""The optional C extension of the wire's hot loops (shoal/wire/_speedups.c).

Everything else is in pyproject.toml. The extension is ``optional``: where
no C compiler or Python headers are found, ``pip install`` warns and
installs the pure-Python package, which is the reference and behaves the
same (docs/decisions.md, "The wire's hot loops in C").
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "shoal.wire._speedups",
            sources=["shoal/wire/_speedups.c"],
            optional=True,
        )
    ]
)
