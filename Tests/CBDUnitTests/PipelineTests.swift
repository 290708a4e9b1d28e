// SPDX-License-Identifier: Apache-2.0
import Testing
import Glibc
@testable import CBDFormat

/// `Parallel.pipeline` (fsck's pass 1 runs on it): every result reaches the consumer once, in
/// order, with no more than `window` made ahead; an error on either side stops it and is the
/// one thrown; stopping early makes no more than the window past the stop.
@Suite struct PipelineTests {
    final class Counter: @unchecked Sendable {
        let lock = Lock()
        var made = 0, maxAhead = 0
        var taken = 0
        func make(_ i: Int) {
            lock.withLock {
                made += 1
                maxAhead = max(maxAhead, i - taken)  // taken: consumes begun
            }
        }
        func take() { lock.withLock { taken += 1 } }
    }
    struct Boom: Error, Equatable { let at: Int }

    @Test(arguments: [(1, 1), (2, 3), (4, 16)]) func deliversEveryResultInOrderWithinTheWindow(_ shape: (Int, Int))
        throws
    {
        let (workers, window) = shape
        let c = Counter()
        var seen: [Int] = []
        try Parallel.pipeline(
            count: 500, workers: workers, window: window,
            produce: { _, i in
                c.make(i)
                if i % 7 == 0 { usleep(50) }  // out-of-order completion
                return i * 3
            },
            consume: { i, v in
                c.take()
                #expect(v == i * 3)
                seen.append(i)
                return true
            })
        #expect(seen == Array(0..<500))
        #expect(c.made == 500)
        #expect(c.maxAhead <= window)
    }

    @Test func aWorkersErrorStopsThePipelineAndIsThrown() {
        let c = Counter()
        #expect(throws: Boom(at: 40)) {
            try Parallel.pipeline(
                count: 10_000, workers: 3, window: 8,
                produce: { _, i in
                    c.make(i)
                    if i == 40 { throw Boom(at: 40) }
                    return i
                },
                consume: { i, _ in
                    #expect(i < 40)
                    c.take()
                    return true
                })
        }
        #expect(c.made < 40 + 8 + 3)
    }

    @Test func theConsumerStopsIt() throws {
        let c = Counter()
        var last = -1
        try Parallel.pipeline(
            count: 10_000, workers: 2, window: 4,
            produce: { _, i in
                c.make(i); return i
            },
            consume: { i, _ in
                c.take(); last = i; return i < 99
            })
        #expect(last == 99)
        #expect(c.made <= 100 + 4)
        #expect(throws: Boom(at: 5)) {
            try Parallel.pipeline(
                count: 100, workers: 2, window: 4, produce: { _, i in i },
                consume: { i, _ in
                    if i == 5 { throw Boom(at: 5) }; return true
                })
        }
    }
}
