// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import Glibc
import CBDFormat

/// A one-line progress bar on standard error, redrawn at most ten times a second.
public final class ProgressBar {
    let label: String
    /// What is counted: nil for bytes (shown as a size), else a noun such as "zones".
    let unit: String?
    private var last: Double = 0
    private var shown = false

    public init(label: String, unit: String? = nil) {
        self.label = label
        self.unit = unit
    }

    /// Whether to show a bar: forced, silenced, or when stderr is a terminal.
    public static func enabled(force: Bool, quiet: Bool) -> Bool {
        quiet ? false : force || isatty(2) != 0
    }

    public func update(_ done: Int, _ total: Int) {
        let now = Clock.seconds()
        guard now - last >= 0.1 || done >= total else { return }
        last = now
        let frac = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let width = 30, filled = Int(frac * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let count = unit.map { "\(done)/\(total) \($0)" } ?? ByteSize.format(done)
        FileHandleStderr.write("\r\(label) [\(bar)] \(Int(frac * 100))% \(count)")
        shown = true
    }

    public func finish() { if shown { FileHandleStderr.write("\n") } }

    /// The bar as a library operation's progress handler.
    public var handler: ProgressHandler { { [self] in update($0, $1) } }
}

/// `-p, --progress`, one spelling for every long-running command (convert, resize, undo,
/// compare, measure, image): a bar on stderr, drawn when stderr is a terminal and forced by
/// the flag, never with -q.
public struct ProgressOption: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Show a progress bar even when stderr is not a terminal.")
    public var progress = false

    public init() {}

    /// The bar to draw, or nil.
    public func bar(_ label: String, unit: String? = nil, quiet: Bool = false) -> ProgressBar? {
        ProgressBar.enabled(force: progress, quiet: quiet) ? ProgressBar(label: label, unit: unit) : nil
    }
}

/// Monotonic time in seconds.
public enum Clock {
    public static func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
