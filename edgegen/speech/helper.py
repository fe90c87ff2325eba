"""Entry point of a speech helper process (see :mod:`edgegen.speech.parallel`).

Kept apart so that the package never imports it: ``python -m edgegen.speech.helper`` (or
``main()``) runs with arguments ``RFD WFD KIND PATH``.
"""

import sys

from edgegen.speech.parallel import helper_main


def main() -> None:
    helper_main(sys.argv[1:])


if __name__ == "__main__":
    main()
