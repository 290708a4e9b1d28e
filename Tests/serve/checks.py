# SPDX-License-Identifier: Apache-2.0
"""What the serve scripts share: a tally of checks, waiting for a condition, a start that
undoes the signal state a test runner leaves to its children, and `cbd serve` under the
ThreadSanitizer plugin."""
import os
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


# nbdkit with the ThreadSanitizer runtime preloaded (CBD_SERVE_PRELOAD): first in the PATH of
# `cbd serve` under make tsan and scripts/tsan-serve.sh.
TSAN_NBDKIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'scripts', 'tsan-nbdkit')


def sanitized(args):
    """A command and its environment: under make tsan and scripts/tsan-serve.sh, `cbd serve`
    runs scripts/tsan-nbdkit/nbdkit, which preloads CBD_SERVE_PRELOAD (the ThreadSanitizer
    runtime) into nbdkit only (a cbd built under TSan has its own), and the client it runs
    (--run) goes without it (qemu-img's coroutines upset TSan). Other commands are left as
    they are."""
    args = list(args)
    if not os.environ.get('CBD_SERVE_PRELOAD') or args[1:2] != ['serve']:
        return args, None
    if '--run' in args:
        i = args.index('--run') + 1
        args[i] = 'env -u LD_PRELOAD ' + args[i]
    return args, dict(os.environ, PATH=os.path.abspath(TSAN_NBDKIT) + ':' + os.environ.get('PATH', ''))
