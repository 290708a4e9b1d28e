// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import Glibc
import CBDDevice

/// Finding and running other programs.
enum Executables {
    /// The first `name` on $PATH that can be run.
    static func find(_ name: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    /// The folder of this program (from /proc/self/exe).
    static func ownDirectory() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return "." }
        let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return OutputFile.directory(of: exe)
    }

    /// The standard output of a shell command, nil if it could not run.
    static func output(of command: String) -> String? {
        guard let pipe = popen(command, "r") else { return nil }
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buf, 1, buf.count, pipe)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return pclose(pipe) == 0 ? String(decoding: out, as: UTF8.self) : nil
    }

    /// Replaces this process with `args[0]`: signals then reach it directly. A parent may
    /// have started us with signals blocked (a test runner does); the server must see
    /// SIGINT and SIGTERM to stop cleanly, so they are unblocked and left at their defaults.
    static func exec(_ args: [String]) throws {
        var set = sigset_t()
        sigemptyset(&set)
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] {
            signal(sig, SIG_DFL)
            sigaddset(&set, sig)
        }
        sigprocmask(SIG_UNBLOCK, &set, nil)
        var cargs = args.map { strdup($0) }
        cargs.append(nil)
        execv(args[0], cargs)
        throw systemErrorLine("cannot run \(args[0])")
    }

    static func systemErrorLine(_ what: String) -> CBDError {
        CBDError("\(what): \(String(cString: strerror(errno)))")
    }
}
