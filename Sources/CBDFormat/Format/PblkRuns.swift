// SPDX-License-Identifier: Apache-2.0
/// The runs of consecutive numbers in a list of pblks, in list order: each run is the slots
/// `slots` (indices into the list) whose pblks follow one another from `first`. One read or
/// write, or one release, per run: the loop every block's I/O is made of, written once
/// (inlinable: it runs on every read and write of the hot paths).
public struct PblkRuns<C: RandomAccessCollection>: Sequence, IteratorProtocol
where
    C.Element: BinaryInteger,
    C.Index == Int
{
    @usableFromInline let pblks: C
    @usableFromInline var at: Int

    @inlinable public init(_ pblks: C) {
        self.pblks = pblks
        at = pblks.startIndex
    }

    @inlinable public mutating func next() -> (first: Int, slots: Range<Int>)? {
        guard at < pblks.endIndex else { return nil }
        let start = at
        at += 1
        while at < pblks.endIndex && pblks[at] == pblks[at - 1] + 1 { at += 1 }
        return (Int(pblks[start]), start..<at)
    }
}
