// SPDX-License-Identifier: Apache-2.0
import ArgumentParser
import CBDFormat

/// Sizes as people type them, with util-linux's suffixes: `1048576`, `512K` or `512KiB`
/// (binary: K M G T P E, powers of 1024), `64kB`/`64MB`/`1GB` (decimal: kB MB GB TB PB EB,
/// powers of 1000), `1.5G`; letters in either case. One parser for every tool.
public enum ByteSize {
    static let units: [(String, Int)] = [("K", 10), ("M", 20), ("G", 30), ("T", 40), ("P", 50), ("E", 60)]
    /// What the help texts say sizes accept.
    public static let help =
        "a number of bytes, with K M G T P E (powers of 1024, KiB... also) or kB MB GB TB "
        + "(powers of 1000)"

    /// Parses a non-negative size in bytes; nil for anything malformed or too large.
    public static func parse(_ text: String) -> Int? {
        let s = Substring(text.trimmingCharacters(in: " "))
        let digits = s.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        let suffix = s.dropFirst(digits.count).uppercased()
        guard !digits.isEmpty, digits.filter({ $0 == "." }).count <= 1, digits != "." else { return nil }
        let multiplier: Double
        if suffix.isEmpty || suffix == "B" {
            multiplier = 1
        } else if let i = units.firstIndex(where: { suffix == $0.0 || suffix == $0.0 + "IB" }) {
            multiplier = Double(UInt64(1) << UInt64(units[i].1))
        } else if let i = units.firstIndex(where: { suffix == $0.0 + "B" }) {
            multiplier = (0...i).reduce(1.0) { r, _ in r * 1000 }
        } else {
            return nil
        }
        guard let v = Double(digits) else { return nil }
        let bytes = v * multiplier
        guard bytes < 9.2e18 else { return nil }
        if !digits.contains("."), let n = Int(digits) {
            let (r, o) = n.multipliedReportingOverflow(by: Int(multiplier))
            return o ? nil : r
        }
        return Int(bytes)
    }

    /// `1.00 GiB`, for summaries.
    public static func format(_ bytes: Int) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        var v = Double(bytes), i = -1
        while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
        let r = (v * 100).rounded() / 100
        var s = String(r)
        if let dot = s.firstIndex(of: ".") {
            let decimals = s.distance(from: dot, to: s.endIndex) - 1
            if decimals < 2 { s += String(repeating: "0", count: 2 - decimals) }
        }
        return "\(s) \(units[i].0)iB"
    }
}

/// A size argument: a usage error, with the text quoted, when it does not parse.
public struct SizeArgument: ExpressibleByArgument, Sendable {
    public let bytes: Int
    public init?(argument: String) {
        guard let b = ByteSize.parse(argument) else { return nil }
        bytes = b
    }
    public init(bytes: Int) { self.bytes = bytes }
    public var defaultValueDescription: String { "\(bytes)" }
}

/// A logical block size: a power of two from 4K to 1G, as an lblk_shift.
public struct BlockSizeArgument: ExpressibleByArgument, Sendable {
    public let lblkShift: Int
    public let text: String
    public init?(argument: String) {
        guard let b = ByteSize.parse(argument), let shift = LayoutPlanner.lblkShift(forBlockSize: b) else { return nil }
        lblkShift = shift
        text = argument
    }
    public var defaultValueDescription: String { text }
}

extension String {
    func trimmingCharacters(in set: Character) -> String {
        String(drop(while: { $0 == set }).reversed().drop(while: { $0 == set }).reversed())
    }
}

/// `--level N`: the lz4 tool's numbering, 1 (fast, the default) to 12 (LZ4HC's highest).
extension CompressionLevel: ExpressibleByArgument {
    public init?(argument: String) {
        guard let n = Int(argument) else { return nil }
        self.init(n)
    }
    public var defaultValueDescription: String { description }
}
