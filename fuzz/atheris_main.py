"""One coverage-guided run of one target under atheris (libFuzzer), in its own process.

``python -m fuzz.atheris_main TARGET [libFuzzer arguments and corpus directories]``;
:mod:`fuzz.run` starts it.  Only ``tunnels`` is instrumented: coverage of our parsers
guides the search, not that of Twisted or IPv8.
"""
import sys

import atheris

with atheris.instrument_imports(include=["tunnels"]):
    from fuzz.targets import TARGETS


def main() -> None:
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
