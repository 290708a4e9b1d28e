// SPDX-License-Identifier: Apache-2.0
import Dispatch

/// The converters' windows of blocks, double-buffered: a window is filled in the background
/// (compressed or decoded on all cores) while the calling thread writes out the window filled
/// before it, in order. The window a budget allows may be the only one: then it is written
/// before it is filled again. One home for what `RawToCBD` and `CBDToRaw` each wrote.
package final class DoubleBuffer<Window: AnyObject>: @unchecked Sendable {
    private let windows: [Window]
    private let done: [DispatchGroup]
    private let errors: [ErrorBox]
    /// Whether a window may be filled while the one before is still filling (false when the
    /// fills share scratch buffers).
    private let overlap: Bool
    private let writeOut: (Window) throws -> Void
    private var next = 0
    /// The window filled (or filling) and not yet written, by its index.
    private var pending: Int?

    /// `windows` to alternate (one or two); `write` writes a filled window out.
    package init(_ windows: [Window], overlappingFills overlap: Bool, write: @escaping (Window) throws -> Void) {
        self.windows = windows
        done = windows.map { _ in DispatchGroup() }
        errors = windows.map { _ in ErrorBox() }
        self.overlap = overlap
        writeOut = write
    }

    /// Sets up the next window with `prepare` on this thread, fills it with `fill` in the
    /// background, and meanwhile writes the window filled before it.
    package func start(prepare: (Window) throws -> Void, fill: @escaping (Window) throws -> Void) throws {
        let i = next % windows.count
        next += 1
        if let p = pending, p == i || !overlap {
            if p == i {
                try flush()
            } else {
                try wait(p)
            }
        }
        let w = windows[i], box = errors[i]
        try prepare(w)
        let job = UncheckedBox((w, fill))
        DispatchQueue.global().async(group: done[i]) {
            do { try job.value.1(job.value.0) } catch { box.set(error) }
        }
        if let p = pending { try write(p) }
        pending = i
    }

    /// Writes the window pending, if any (before a gap in the input, and at the end).
    package func flush() throws {
        guard let p = pending else { return }
        pending = nil
        try write(p)
    }

    private func wait(_ i: Int) throws {
        done[i].wait()
        if let e = errors[i].first { throw e }
    }

    private func write(_ i: Int) throws {
        try wait(i)
        try writeOut(windows[i])
    }
}
