// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Glibc

extension Parallel {
    /// Makes `produce(worker, i)` for i in 0..<count on `workers` threads and hands each result
    /// to `consume(i, result)` on the calling thread, in order of i. At most `window` results
    /// are made ahead of the one being consumed, so memory is `window` results whatever
    /// `count` is. `consume` returns false to stop early; the first error (of either side)
    /// stops every worker and is rethrown.
    ///
    /// Why not batches (a barrier every `window` items): on a virtual machine a thread's wakeup
    /// costs hundreds of microseconds, and a barrier pays several per batch on the critical
    /// path. Here a worker sleeps only when it is `window` ahead and the consumer only when
    /// the next result is not made yet; each side wakes the other only when it sleeps.
    package static func pipeline<T>(
        count: Int, workers: Int, window: Int,
        produce: @escaping (Int, Int) throws -> T,
        consume: (Int, T) throws -> Bool
    ) throws {
        guard count > 0 else { return }
        let state = PipelineState<T>(window: max(1, window), count: count)
        let workers = max(1, min(workers, count))
        let done = DispatchGroup()
        let body = UncheckedBox(produce)
        for w in 0..<workers {
            DispatchQueue.global().async(group: done) { state.work(worker: w, body.value) }
        }
        defer {
            state.cancel()
            done.wait()
        }
        for i in 0..<count {
            guard let value = try state.take(i), try consume(i, value) else { return }
        }
    }
}

/// The ring of results in flight between `Parallel.pipeline`'s workers and its consumer.
private final class PipelineState<T>: @unchecked Sendable {
    // Allocated, not stored properties: pthread objects must not move.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let madeCond: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)  // the consumer waits
    private let spaceCond: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)  // workers wait
    private var ring: [T?]
    private let count: Int
    private var next = 0  // the next index a worker takes
    private var consumed = 0  // results taken by the consumer
    private var consumerWaits = false
    private var workersWaiting = 0
    private var cancelled = false
    private var error: Error?

    init(window: Int, count: Int) {
        ring = [T?](repeating: nil, count: window)
        self.count = count
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(madeCond, nil)
        pthread_cond_init(spaceCond, nil)
    }

    deinit {
        pthread_cond_destroy(spaceCond)
        pthread_cond_destroy(madeCond)
        pthread_mutex_destroy(mutex)
        spaceCond.deallocate()
        madeCond.deallocate()
        mutex.deallocate()
    }

    /// A worker's loop: take the next index while it is within the window, make it, store it.
    func work(worker: Int, _ produce: (Int, Int) throws -> T) {
        pthread_mutex_lock(mutex)
        while true {
            while !cancelled && next < count && next - consumed >= ring.count {
                workersWaiting += 1
                pthread_cond_wait(spaceCond, mutex)
                workersWaiting -= 1
            }
            guard !cancelled && next < count else { break }
            let i = next
            next += 1
            pthread_mutex_unlock(mutex)
            let made = Result { try produce(worker, i) }
            pthread_mutex_lock(mutex)
            switch made {
            case .success(let value):
                ring[i % ring.count] = value
                if consumerWaits && readyAhead() { pthread_cond_signal(madeCond) }
            case .failure(let e):
                if error == nil { error = e }
                cancelled = true
                pthread_cond_broadcast(spaceCond)
                pthread_cond_signal(madeCond)
            }
        }
        pthread_mutex_unlock(mutex)
    }

    /// Whether a sleeping consumer should wake: the next quarter window of results (or all that
    /// are left) are made, so that it wakes once for several (a wakeup is the costly part).
    /// Always reached: the workers go on until those are made or the window is full of made
    /// results. Called with the mutex held.
    private func readyAhead() -> Bool {
        let want = min(max(1, ring.count / 4), count - consumed)
        return (0..<want).allSatisfy { ring[(consumed + $0) % ring.count] != nil }
    }

    /// Result `i`, waiting until it is made; nil when the pipeline was cancelled without error.
    func take(_ i: Int) throws -> T? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while ring[i % ring.count] == nil && error == nil && !cancelled {
            // Sleeps until several results are made (see `readyAhead`).
            consumerWaits = true
            pthread_cond_wait(madeCond, mutex)
            consumerWaits = false
        }
        if let error { throw error }
        guard let value = ring[i % ring.count] else { return nil }
        ring[i % ring.count] = nil
        consumed = i + 1
        if workersWaiting > 0 { pthread_cond_signal(spaceCond) }
        return value
    }

    /// Stops the workers after the items they are making.
    func cancel() {
        pthread_mutex_lock(mutex)
        cancelled = true
        pthread_cond_broadcast(spaceCond)
        pthread_mutex_unlock(mutex)
    }
}
