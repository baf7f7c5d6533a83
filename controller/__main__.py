import sys

from controller import interrupts

# Before anything else is imported: a Ctrl-C from the first moment on ends in exit 130, not a traceback.
interrupts.install()
try:
    from controller.cli import main

    code = main()
except KeyboardInterrupt:
    code = 130
# The work is done and said: a signal during the interpreter's teardown (which puts back the
# default handlers, whose action is to die by the signal) must not change the exit status.
interrupts.ignore()
sys.exit(code)
