# SPDX-License-Identifier: Apache-2.0
"""What the serve scripts share: a tally of checks, waiting for a condition, and a start
that undoes the signal state a test runner leaves to its children."""
import signal
import sys
import time

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print('FAIL:', what)


def wait_for(cond, timeout=20):
    """True once cond() is, polled every 50 ms; False after `timeout` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def finish():
    print(f'{passed} passed, {failed} failed')
    sys.exit(1 if failed else 0)


def run(main):
    # The servers started here must stop on SIGTERM: a test runner may have left signals
    # blocked or ignored, which every child would inherit (nbdfuse then waits out a timeout).
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    main()
