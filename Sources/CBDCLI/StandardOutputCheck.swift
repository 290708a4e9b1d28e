// SPDX-License-Identifier: Apache-2.0
import CBDDevice
import Glibc

/// What coreutils' `close_stdout` does: at exit, standard output is flushed and a write that
/// failed (a closed descriptor, a full disk) is one line and a failure status, never a silent
/// success with the output lost. A reader that went away (EPIPE, `| head`) stays silent, as
/// if SIGPIPE had ended the tool.
public enum StandardOutputCheck {
    nonisolated(unsafe) private static var tool = ""
    nonisolated(unsafe) private static var status: Int32 = 1

    /// Installs the check for `tool`, whose operational failure is `status` (fsck.cbd: 8).
    public static func install(tool: String, status: Int32 = 1) {
        (Self.tool, Self.status) = (tool, status)
        atexit { StandardOutputCheck.check() }
    }

    static func check() {
        let e = flushStandardOutput()
        guard e != 0 else { return }
        if e == EPIPE { _exit(128 + SIGPIPE) }
        FileHandleStderr.write("\(tool): standard output: write error: \(String(cString: strerror(e)))\n")
        _exit(status)
    }
}
