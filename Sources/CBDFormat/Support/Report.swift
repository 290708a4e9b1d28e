// SPDX-License-Identifier: Apache-2.0
/// An ordered set of named values: what cbddump and cbd info show. The tools render the one
/// model as aligned text (like dumpe2fs) or as JSON, so the two views cannot disagree.
public struct Report {
    public indirect enum Value {
        case int(Int)
        case string(String)
        case bool(Bool)
        case double(Double)
        case list([Value])
        case object(Report)
        /// Raw bytes (a pblk's contents), shown as a hex dump.
        case bytes([UInt8])
        /// An unsigned field of the format, shown as it is stored.
        case unsigned(UInt64)
        /// A size in bytes: a number in JSON, with a human size in text.
        case size(Int)
        /// An inclusive range of numbers (pblks, lblks): `{"first", "last"}` in JSON.
        case range(Int, Int)
    }

    public var fields: [(String, Value)] = []
    public init() {}

    public mutating func add(_ key: String, _ v: Int) { fields.append((key, .int(v))) }
    public mutating func add(_ key: String, _ v: String) { fields.append((key, .string(v))) }
    public mutating func add(_ key: String, _ v: Bool) { fields.append((key, .bool(v))) }
    public mutating func add(_ key: String, _ v: Double) { fields.append((key, .double((v * 1000).rounded() / 1000))) }
    public mutating func add(_ key: String, _ v: [Int]) { fields.append((key, .list(v.map { .int($0) }))) }
    public mutating func add(_ key: String, _ v: Report) { fields.append((key, .object(v))) }
    public mutating func add(_ key: String, _ v: [Report]) { fields.append((key, .list(v.map { .object($0) }))) }
    public mutating func add(_ key: String, unsigned v: UInt64) { fields.append((key, .unsigned(v))) }
    public mutating func add(_ key: String, size v: Int) { fields.append((key, .size(v))) }
    public mutating func add(_ key: String, first: Int, last: Int) { fields.append((key, .range(first, last))) }
}
