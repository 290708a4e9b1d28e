// SPDX-License-Identifier: Apache-2.0
import Glibc

/// The items 0..<count of one piece of work, handed out one at a time to whichever threads
/// ask, and a wait until every item is done: a thread that would otherwise sit idle can join
/// work that another began (the server's writers held back by a commit help compress it),
/// and the owner learns when all the results are there.
package final class WorkClaims: @unchecked Sendable {
    // Allocated, not stored properties: pthread objects must not move.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t> = .allocate(capacity: 1)
    private let allDone: UnsafeMutablePointer<pthread_cond_t> = .allocate(capacity: 1)
    private let count: Int
    private var handedOut = 0
    private var done = 0

    package init(count: Int) {
        self.count = count
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(allDone, nil)
    }

    deinit {
        pthread_cond_destroy(allDone)
        pthread_mutex_destroy(mutex)
        allDone.deallocate()
        mutex.deallocate()
    }

    /// Calls `body(i)` for items no other thread took, until none is left. What `body` wrote
    /// is seen by the thread that `waitForAll` returns to (both pass through the mutex).
    package func work(_ body: (Int) -> Void) {
        while let i = take() {
            body(i)
            pthread_mutex_lock(mutex)
            done += 1
            if done == count { pthread_cond_broadcast(allDone) }
            pthread_mutex_unlock(mutex)
        }
    }

    /// Returns once every item is done, by whichever threads took them.
    package func waitForAll() {
        pthread_mutex_lock(mutex)
        while done < count { pthread_cond_wait(allDone, mutex) }
        pthread_mutex_unlock(mutex)
    }

    private func take() -> Int? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard handedOut < count else { return nil }
        handedOut += 1
        return handedOut - 1
    }
}
