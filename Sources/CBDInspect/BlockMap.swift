// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDDevice
import CBDVolume

/// Where a device's blocks are (`cbd map`, as `qemu-img map`): runs of lblks in one state,
/// an allocated run's pblks following each other on the device. Streamed: tables are read a
/// chunk at a time, zones whose metadata is a hole are passed with one seek, and only the run
/// being built is held, so a map costs what the device holds, in any size.
public struct BlockMap {
    public enum State: String, Sendable {
        case unallocated, raw, compressed
        /// An entry that is not well formed (fsck.cbd tells more).
        case damaged
    }

    public struct Run: Equatable, Sendable {
        public var lblk: Int
        public var count: Int
        public var state: State
        /// The first pblk and how many the run's blocks take (0 when unallocated or damaged).
        public var firstPblk: Int?
        public var pblks: Int
        /// Whether the run's pblks follow each other on the device, in lblk and slot order.
        public var contiguous: Bool
        fileprivate var lastPblk: Int?
    }

    let device: BlockDevice
    public let geometry: Geometry

    public init(device: BlockDevice) throws {
        self.device = device
        geometry = try OpenedDevice(device).geometry
    }

    /// Calls `body` with every run, in lblk order, covering every lblk once.
    public func forEachRun(_ body: (Run) throws -> Void) throws {
        let g = geometry, codec = EntryCodec(g)
        let scanner = TableScanner(device: device, geometry: g)
        let buffer = scanner.makeBuffer()
        var current: Run?
        func add(_ n: Int, _ count: Int, _ state: State, _ pblks: [Pblk]) throws {
            let ints = pblks.map { Int($0) }
            let contiguous = zip(ints, ints.dropFirst()).allSatisfy { $1 == $0 + 1 }
            if var r = current, r.lblk + r.count == n, r.state == state,
                state == .unallocated || state == .damaged
                    || (r.contiguous && contiguous && ints.first.map { $0 == (r.lastPblk ?? -2) + 1 } == true)
            {
                r.count += count
                r.pblks += ints.count
                r.lastPblk = ints.last ?? r.lastPblk
                current = r
                return
            }
            if let r = current { try body(r) }
            current = Run(
                lblk: n, count: count, state: state, firstPblk: ints.first, pblks: ints.count,
                contiguous: contiguous, lastPblk: ints.last)
        }
        var next = 0  // lblks below are mapped
        for z in scanner.zonesWithMetadata() {
            try scanner.forEachEntry(zone: z, buffer: buffer) { n, p in
                guard n < g.nrLblk else { return }
                if n > next { try add(next, n - next, .unallocated, []) }
                switch try? codec.decodeChecked(p) {
                case .compressed(_, let pblks)?: try add(n, 1, .compressed, pblks)
                case .raw(let pblks)?: try add(n, 1, .raw, pblks)
                case .unallocated?: try add(n, 1, .unallocated, [])
                case nil: try add(n, 1, .damaged, [])
                }
                next = n + 1
            }
        }
        if next < g.nrLblk { try add(next, g.nrLblk - next, .unallocated, []) }
        if let r = current { try body(r) }
    }
}
