// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Glibc

/// Runs work on all cores. The hot paths split a window of blocks into one contiguous
/// slice per worker; each worker owns its buffers, so nothing is shared but read-only input.
package enum Parallel {
    package static var workers: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Calls `body(worker, range)` for `count` items split into `parts` contiguous ranges,
    /// concurrently, and rethrows the first error.
    package static func forEachSlice(count: Int, parts: Int, _ body: (Int, Range<Int>) throws -> Void) throws {
        let parts = max(1, min(parts, count))
        let errors = ErrorBox()
        withoutActuallyEscaping(body) { body in
            let box = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: parts) { w in
                let lo = count * w / parts, hi = count * (w + 1) / parts
                do { try box.value(w, lo..<hi) } catch { errors.set(error) }
            }
        }
        if let e = errors.first { throw e }
    }
}

/// Holds a value that is safe to share because each worker touches a disjoint part of it.
package struct UncheckedBox<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}

/// The first error of several workers.
package final class ErrorBox: @unchecked Sendable {
    private let lock = Lock()
    private var error: Error?
    package init() {}
    package var first: Error? { lock.withLock { error } }
    package func set(_ e: Error) { lock.withLock { if error == nil { error = e } } }
}
