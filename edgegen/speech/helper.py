"""Entry point of a speech helper process: ``python -m edgegen.speech.helper RFD WFD KIND PATH``.

See :mod:`edgegen.speech.parallel`; kept apart so that the package never imports it.
"""

import sys

from edgegen.speech.parallel import helper_main

if __name__ == "__main__":
    helper_main(sys.argv[1:])
