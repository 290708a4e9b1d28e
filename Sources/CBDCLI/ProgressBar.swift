// SPDX-License-Identifier: Apache-2.0
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
}

/// Monotonic time in seconds.
public enum Clock {
    public static func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
