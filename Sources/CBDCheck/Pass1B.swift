// SPDX-License-Identifier: Apache-2.0
import CBDFormat
import CBDVolume
/// Pass 1B: data pblks claimed by more than one entry (e2fsck's pass 1B-1D). The first owner,
/// in lblk order, keeps the pblk; every later owner gets a copy of its own, or is cleared
/// when its bytes cannot be its own (a compressed block that no longer decompresses) or when
/// no free pblk is left for a copy.
extension Checker {
    func pass1B() throws {
        guard !duplicates.isEmpty else { return }
        // Owners of each duplicated pblk, in lblk order (entries being cleared excluded).
        var owners: [Int: [Int]] = [:]
        var entries: [Int: AllocationEntry] = [:]
        let meta = MetadataCache(device: device, geometry: geometry)
        // A bad entry the person chose to keep is neither read nor cloned: its slots may
        // name pblks outside the data areas, even past the end of the device.
        let lblks = bitmaps.active.lazy.flatMap { self.geometry.lblks(inZone: $0) }
        for n in lblks where newEntries[n] == nil && !keptBad.contains(n) {
            guard let e = try? codec.decode(try meta.entryBytes(n)) else { continue }
            for p in e.pblks where duplicates.contains(Int(p)) {
                owners[Int(p), default: []].append(n)
                entries[n] = e
            }
        }
        try clearUndecodableClaimants(owners: &owners, entries: &entries)
        // Every owner after the first gets a copy of its own.
        var toClone: [Int: Set<Int>] = [:]  // lblk -> lblks it shares with
        for list in owners.values {
            for n in list.dropFirst() { toClone[n, default: []].formUnion(list.filter { $0 != n }) }
        }
        for (n, others) in toClone { crossLinkedLblks.insert(n); crossLinkedLblks.formUnion(others) }
        var zerosLetGo = false
        for n in toClone.keys.sorted() where !stop {
            guard let e = entries[n] else { continue }
            if claims.freeCount < e.pblks.count && !zerosLetGo {
                zerosLetGo = true
                letGoOfZeroHolds()
            }
            var f = facts(lblk: n, zone: geometry.zone(ofLblk: n))
            f.pblks = e.pblks.map { Int($0) }.filter { duplicates.contains($0) }
            f.others = toClone[n, default: []].sorted()
            let suspects = ([n] + f.others).sorted()
            // Decided before asking: the question asked is the fix made.
            if claims.freeCount >= e.pblks.count {
                guard decide(Problem(.crossLinked, f, suspectLblks: suspects)) else { continue }
                newEntries[n] = .rewrite(cloneEntry(e, lblk: n))
            } else {
                guard decide(Problem(.crossLinkedNoRoom, f, suspectLblks: suspects))
                else { continue }
                newEntries[n] = .clear
                count(e, by: -1)
            }
            // The old pblks lose this owner; a pblk left with none is free again. The bitmap
            // follows silently: it is part of this fix, not a problem of its own.
            disown(e.pblks, by: n, owners: &owners)
        }
    }

    /// Lets go of the held pblks (marked in use, named by no entry) that pass 2 would free: the
    /// zeros around the data of each leaked range (`dataSpan`: zeros between data stay held,
    /// they may be part of an orphaned block). Done only when a clone finds no other room (it
    /// reads every held pblk): on a nearly full device such pblks (a crash between a commit's
    /// bitmaps and its data) made the difference between a copy and a cleared block. A range
    /// that cannot be read stays held.
    private func letGoOfZeroHolds() {
        for (z, runs) in claims.heldRuns() {
            for r in runs {
                let span: Range<Int>?
                do { span = try dataSpan(of: r, start: geometry.dataStart(z)) } catch { continue }
                for k in r where !(span?.contains(k) ?? false) { claims.unhold(z * Units.pblksPerBitmap + k) }
            }
        }
    }

    /// A compressed claimant of a shared pblk whose bytes do not decompress has lost its data
    /// to the other claimant: it is cleared rather than given a copy of someone else's bytes.
    /// (With -c, pass 1 already cleared every such block.)
    private func clearUndecodableClaimants(
        owners: inout [Int: [Int]],
        entries: inout [Int: AllocationEntry]
    ) throws {
        guard !options.verifyData else { return }
        let scratch = ByteBuffer(count: 2 * geometry.lblkSize)
        for n in entries.keys.sorted() where !stop {
            guard let e = entries[n], case .compressed(let len, let pblks) = e,
                try !device.decompresses(
                    lblk: n, length: len, pblks: pblks, lblkSize: geometry.lblkSize,
                    scratch: scratch.base)
            else { continue }
            var f = facts(lblk: n, zone: geometry.zone(ofLblk: n))
            f.pblks = pblks.map { Int($0) }.filter { duplicates.contains($0) }
            f.others = Set(f.pblks.flatMap { owners[$0] ?? [] }).subtracting([n]).sorted()
            let problem = Problem(.crossLinkedCorrupt, f, suspectLblks: ([n] + f.others).sorted())
            crossLinkedLblks.formUnion(problem.suspectLblks)
            // Declined: it keeps its entry, and is not offered a clone of bytes it cannot use.
            entries[n] = nil
            guard decide(problem) else { continue }
            newEntries[n] = .clear
            count(e, by: -1)
            disown(pblks, by: n, owners: &owners)
        }
    }

    /// Takes lblk `n` off the owners of `pblks`; a pblk left with no owner is free again.
    private func disown(_ pblks: [Pblk], by n: Int, owners: inout [Int: [Int]]) {
        for p in pblks.map({ Int($0) }) {
            if var list = owners[p] {
                list.removeAll { $0 == n }
                owners[p] = list
                if list.isEmpty { freeAfterRepairs(p) }
            } else {
                freeAfterRepairs(p)
            }
        }
    }

    /// The same entry on newly claimed pblks (the caller made sure there are enough); the
    /// data copies are written with the repairs.
    private func cloneEntry(_ e: AllocationEntry, lblk n: Int) -> AllocationEntry {
        let fresh = e.pblks.compactMap { old -> Pblk? in
            guard let p = claims.allocate(near: geometry.zone(ofLblk: n)),
                case .data(let z, let k) = geometry.place(ofPblk: p)
            else { return nil }
            bitmaps[z].set(k)
            changedBitmaps.insert(z)
            clonedData.append((Int(old), p))
            return Pblk(p)
        }
        return e.withPblks(fresh)
    }
}
