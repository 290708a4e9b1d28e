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


def sanitized(args):
    """A command and its environment: under scripts/tsan-serve.sh, `cbd serve` (so nbdkit and
    the plugin) gets CBD_SERVE_PRELOAD, the ThreadSanitizer runtime, as LD_PRELOAD, and the
    client it runs (--run) goes without it (qemu-img's coroutines upset TSan). Other commands
    are left as they are."""
    args = list(args)
    preload = os.environ.get('CBD_SERVE_PRELOAD')
    if not preload or args[1:2] != ['serve']:
        return args, None
    if '--run' in args:
        i = args.index('--run') + 1
        args[i] = 'env -u LD_PRELOAD ' + args[i]
    return args, dict(os.environ, LD_PRELOAD=preload)
