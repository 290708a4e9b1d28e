// SPDX-License-Identifier: Apache-2.0
import Testing
import Dispatch
import Glibc
@testable import CBDFormat

/// `WorkClaims` (the commit plan's packing, joined by writers held back): each item is done
/// once, by whichever thread took it, and `waitForAll` returns only when every item is done,
/// also those that other threads still hold.
@Suite struct WorkClaimsTests {
    final class Tally: @unchecked Sendable {
        let lock = Lock()
        var times = [Int](repeating: 0, count: 300)
        var finished = 0
        var finishedAtWait = -1
        func did(_ i: Int) {
            lock.withLock {
                times[i] += 1; finished += 1
            }
        }
    }

    @Test(arguments: [1, 2, 5]) func everyItemIsDoneOnceAndWaitForAllWaitsForTheLast(helpers: Int) {
        let claims = WorkClaims(count: 300)
        let tally = Tally()
        let holding = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        for _ in 0..<helpers {
            DispatchQueue.global().async(group: group) {
                var first = true
                claims.work { i in
                    if first {  // the owner runs out of items while this one is still busy
                        first = false
                        holding.signal()
                        usleep(20_000)
                    }
                    tally.did(i)
                }
                if first { holding.signal() }  // took nothing: the others had them all
            }
        }
        for _ in 0..<helpers { holding.wait() }
        claims.work { tally.did($0) }
        claims.waitForAll()
        tally.lock.withLock { tally.finishedAtWait = tally.finished }
        group.wait()
        #expect(tally.times == [Int](repeating: 1, count: 300))
        #expect(tally.finishedAtWait == 300)
    }

    @Test func nothingToDoReturnsAtOnce() {
        let claims = WorkClaims(count: 0)
        var called = false
        claims.work { _ in called = true }
        claims.waitForAll()
        #expect(!called)
    }
}
