// SPDX-License-Identifier: Apache-2.0
import Glibc

/// What a writing tool does on SIGINT, SIGTERM or SIGHUP: remove what it created and has not
/// finished (a half-written output), say in one line what state it leaves, and exit with
/// 128 + the signal (130, 143, 129), as a shell does.
///
/// The handler runs in signal context, so it only calls unlink(2), write(2) and _exit(2), on
/// strings prepared beforehand.
public enum Interrupts {
    /// Installs the handlers with the line to print, e.g. "interrupted; out.cbd not written".
    public static func install(tool: String, message: String) {
        _ = State.paths  // allocated here, not in the handler
        update(tool: tool, message: message)
        var set = sigset_t()
        sigemptyset(&set)
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            signal(sig, onSignal)
            sigaddset(&set, sig)
        }
        // A parent may have started us with these blocked; they must reach the handler.
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// Changes the line (a tool's state changes as it goes).
    public static func update(tool: String, message: String) {
        let text = "\(tool): \(message)\n"
        let old = State.message
        State.message = strdup(text)
        State.messageLength = strlen(text)
        free(old)
    }

    /// Removes `path` if the tool is interrupted (until `keep(path)`).
    public static func removeOnInterrupt(_ path: String) {
        guard State.count < State.capacity else { return }
        State.paths[State.count] = strdup(path)
        State.count += 1
    }

    /// The file is finished (or renamed away): an interrupt no longer removes it.
    public static func keep(_ path: String) {
        for i in 0..<State.count where State.paths[i].map({ String(cString: $0) }) == path {
            free(State.paths[i])
            State.paths[i] = nil
        }
    }

    /// Globals the handler reads; written only outside it.
    enum State {
        nonisolated(unsafe) static var message: UnsafeMutablePointer<CChar>?
        nonisolated(unsafe) static var messageLength = 0
        static let capacity = 16
        nonisolated(unsafe) static let paths: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
            let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: capacity)
            p.initialize(repeating: nil, count: capacity)
            return p
        }()
        nonisolated(unsafe) static var count = 0
    }
}

private func onSignal(_ sig: Int32) {
    for i in 0..<Interrupts.State.count { if let p = Interrupts.State.paths[i] { unlink(p) } }
    if isatty(2) != 0 { _ = write(2, "\n", 1) }  // off a progress bar's line
    if let m = Interrupts.State.message { _ = write(2, m, Interrupts.State.messageLength) }
    _exit(128 + sig)
}
